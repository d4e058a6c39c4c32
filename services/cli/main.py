"""``careloop``: serve, migrate and administer clients."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from careloop.services.db import get_engine, session_scope
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings

app = typer.Typer(
    help="careloop: symptom reports and telehealth in, FHIR R4 out.", no_args_is_help=True
)
clients = typer.Typer(help="App clients (OAuth client_credentials).", no_args_is_help=True)
app.add_typer(clients, name="clients")


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    upgrade(get_engine())
    typer.echo("database is at the newest schema")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="API worker processes.")] = 1,
) -> None:
    """Run the API (migrating the database first)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    upgrade(get_engine())
    uvicorn.run(
        "careloop.services.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


@clients.command("create")
def create_client_cmd(
    name: str,
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
    try:
        with session_scope() as session:
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


def main() -> None:
    """Entry point of the ``careloop`` console script."""
    app()
