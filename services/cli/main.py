"""The administrative commands of ``careloop``: migrate, clients, keys, alert routes, EHRs.

The commands that run workflows (serve, worker, beat, demo, ``ehr pull``) are added to these by
``careloop.workflows.cli``, which is the ``careloop`` console script.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from careloop.services.cli.ehr import ehr, keys, patients
from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

app = PlainTyper(
    help="careloop: symptom reports and telehealth in, FHIR R4 out.", no_args_is_help=True
)
clients = PlainTyper(help="App clients (OAuth client_credentials).", no_args_is_help=True)
notify = PlainTyper(help="Where alerts go.", no_args_is_help=True)
tasks = PlainTyper(help="Background tasks: dead letters and replay.", no_args_is_help=True)
app.add_typer(clients, name="clients")
app.add_typer(notify, name="notify")
app.add_typer(tasks, name="tasks")
app.add_typer(ehr, name="ehr")
app.add_typer(patients, name="patients")
app.add_typer(keys, name="keys")


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    upgrade(get_engine())
    typer.echo("database is at the newest schema")


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


@notify.command("add-webhook")
def add_webhook(
    url: Annotated[str, typer.Argument(help="The https:// URL alerts are posted to.")],
    secret: Annotated[
        str | None, typer.Option(help="whsec_... secret; generated if absent.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant (organization) name.")] = "default",
    min_severity: Annotated[str, typer.Option(help="info, warning, high or critical.")] = "info",
) -> None:
    """Send all of a tenant's alerts to a webhook (the on-call channel)."""
    from careloop.services.alerts.routes_service import RouteError, add_route
    from careloop.services.common.egress import destination_policy
    from careloop.services.tenancy.service import get_or_create_tenant

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            tenant_id = get_or_create_tenant(session, tenant).id
            route = add_route(
                session,
                tenant_id,
                "oncall",
                "webhook",
                url,
                secret,
                min_severity,
                destinations=destination_policy(get_settings()),
            )
            out = {"id": route.id, "tenant": tenant_id, "url": url, "secret": route.secret}
    except RouteError as exc:
        typer.echo(f"{exc.field}: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(out))


@notify.command("list")
def list_routes(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's routes.")] = None,
) -> None:
    """List notification routes (on-call and clinicians'), one JSON object a line."""
    from sqlmodel import col, select

    from careloop.services.alerts.models import NotificationRoute

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        query = select(NotificationRoute).order_by(
            col(NotificationRoute.created_at), col(NotificationRoute.id)
        )
        if tenant is not None:
            query = query.where(NotificationRoute.tenant_id == tenant)
        rows = session.exec(query).all()
        if not rows:
            typer.echo("no notification routes")
        for row in rows:
            out = {
                "id": row.id,
                "tenant": row.tenant_id,
                "recipient": row.recipient,
                "channel": row.channel,
                "address": row.address,
                "min_severity": row.min_severity,
            }
            typer.echo(json.dumps(out))


@notify.command("remove")
def remove_route(
    route_id: Annotated[str, typer.Argument(help="The route's id (from notify list).")],
) -> None:
    """Stop sending alerts over a route (notifications already made are still delivered)."""
    from careloop.services.alerts.models import NotificationRoute

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        route = session.get(NotificationRoute, route_id)
        if route is None:
            typer.echo(f"no notification route {route_id}", err=True)
            raise typer.Exit(2)
        session.delete(route)
    typer.echo(json.dumps({"removed": route_id}))


@tasks.command("dead")
def dead_tasks() -> None:
    """List tasks that failed their last try (ids and error classes only)."""
    from sqlmodel import select

    from careloop.services.outbox.models import DeadTask

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        rows = session.exec(select(DeadTask).where(DeadTask.replayed_at == None)).all()  # noqa: E711
        if not rows:
            typer.echo("no dead tasks")
        for row in rows:
            typer.echo(
                json.dumps(
                    {
                        "id": row.id,
                        "task": row.task,
                        "payload": json.loads(row.payload),
                        "error": row.error,
                        "attempts": row.attempts,
                        "failed_at": row.failed_at.isoformat(),
                    }
                )
            )


@tasks.command("replay")
def replay_task(
    dead_id: Annotated[int, typer.Argument(help="The dead task's id (from tasks dead).")],
) -> None:
    """Run a dead task again (after fixing its cause)."""
    from careloop.services.dead_letters import DeadTaskError, replay

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            replay(session, dead_id)
    except DeadTaskError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps({"replayed": dead_id}))


def _configuration_errors(exc: ValidationError) -> str:
    # Only the messages and field names: pydantic's own text repeats the input values, which
    # would print secrets.
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        where = f"CARELOOP_{field.upper()}: " if field else ""
        lines.append(f"careloop: configuration error: {where}{message}")
    return "\n".join(lines)


def run(cli: typer.Typer) -> None:
    """Run the command line ``cli``, reporting configuration errors and crashes without PHI."""
    try:
        cli()
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        typer.echo(_configuration_errors(exc), err=True)
        raise SystemExit(2) from None
    except Exception as exc:  # what a command did not handle, as careloop logs it (no PHI)
        from careloop.services.logs.config import report_crash

        raise SystemExit(report_crash(exc)) from None
