"""``careloop clients``: app clients (OAuth client_credentials): create, list, revoke."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from careloop.services.cli.audited import note_ids
from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

clients = PlainTyper(help="App clients (OAuth client_credentials).", no_args_is_help=True)


def _check_jwks_url(url: str) -> None:
    """A JWKS URL is fetched when the client authenticates: it obeys the egress rules."""
    from careloop.integrations.egress import DestinationRefused
    from careloop.services.common.egress import destination_policy

    try:
        destination_policy(get_settings()).check_url(url)
    except DestinationRefused as exc:
        typer.echo(f"jwks_url: JWKS URL refused: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@clients.command("create")
def create_client_cmd(
    name: Annotated[str, typer.Argument(help="What the client is, e.g. the app's name.")],
    scope: Annotated[str, typer.Option(help='SMART scopes, e.g. "system/Observation.cruds".')],
    tenant: Annotated[str, typer.Option(help="Tenant (organization) name.")] = "default",
    jwks_file: Annotated[
        Path | None, typer.Option(help="Public JWKS for private_key_jwt instead of a secret.")
    ] = None,
    jwks_url: Annotated[str | None, typer.Option(help="URL of the client's public JWKS.")] = None,
) -> None:
    """Register an app client and print its credentials (the secret is shown once)."""
    from careloop.services.auth.scopes import ScopeError
    from careloop.services.tenancy.service import create_client

    upgrade(get_engine())
    jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    if jwks_url is not None:
        _check_jwks_url(jwks_url)
    try:
        with session_scope(get_engine()) as session:
            new = create_client(session, name, scope, tenant, jwks=jwks, jwks_url=jwks_url)
        note_ids(f"client:{new.client_id}")
    except ScopeError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    out: dict[str, str | None] = {
        "client_id": new.client_id,
        "client_secret": new.client_secret,
        "tenant": new.tenant_id,
        "scope": new.scope,
        "token_url": get_settings().base_url.rstrip("/") + "/oauth/token",
    }
    typer.echo(json.dumps(out))


@clients.command("list")
def list_clients(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's clients.")] = None,
) -> None:
    """List app clients, one JSON object a line (never secrets)."""
    from sqlmodel import col, select

    from careloop.services.tenancy.models import AppClient

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        query = select(AppClient).order_by(col(AppClient.created_at), col(AppClient.client_id))
        if tenant is not None:
            query = query.where(AppClient.tenant_id == tenant)
        rows = session.exec(query).all()
        if not rows:
            typer.echo("no app clients")
        for row in rows:
            auth = "secret" if row.secret_hash else "private_key_jwt"
            out = {
                "client_id": row.client_id,
                "name": row.name,
                "tenant": row.tenant_id,
                "scope": row.scopes,
                "auth": auth,
                "active": row.active,
                "created_at": row.created_at.isoformat(),
            }
            typer.echo(json.dumps(out))


@clients.command("revoke")
def revoke_client(
    client_id: Annotated[str, typer.Argument(help="The client's id (cl_...).")],
) -> None:
    """Revoke a client: it gets no new tokens (issued ones expire within their lifetime)."""
    from careloop.services.tenancy.models import AppClient

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        client = session.get(AppClient, client_id)
        if client is None:
            typer.echo(f"no app client {client_id}", err=True)
            raise typer.Exit(2)
        client.active = False
        session.add(client)
    typer.echo(json.dumps({"revoked": client_id}))
