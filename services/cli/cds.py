"""``careloop cds``: the EHRs trusted to call careloop's CDS Hooks services."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from careloop.services.cli.ehr import TenantOpt, fail
from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

cds = PlainTyper(help="CDS Hooks clients (EHRs calling careloop's cards).", no_args_is_help=True)


@cds.command("add-client")
def cds_add_client(
    iss: Annotated[str, typer.Argument(help="The EHR's JWT issuer (iss), as it signs.")],
    jwks_url: Annotated[str, typer.Option(help="The EHR's JWKS URL (its public keys).")],
    ehr: Annotated[
        str | None,
        typer.Option(help="The tenant's EHR connection whose patient links resolve its ids."),
    ] = None,
    tenant: TenantOpt = "default",
) -> None:
    """Trust an EHR's signed CDS Hooks calls (discovery, patient-view, feedback)."""
    from careloop.services.cds.clients import CdsClientError, add_client, client_json
    from careloop.services.common.egress import destination_policy

    upgrade(get_engine())
    settings = get_settings()
    try:
        with session_scope(get_engine()) as session:
            client = add_client(
                session, iss, jwks_url, tenant, ehr, destinations=destination_policy(settings)
            )
            out = client_json(client)
    except CdsClientError as exc:
        fail(f"{exc.field}: {exc.message}")
    out["discovery_url"] = settings.base_url.rstrip("/") + "/cds-services"
    typer.echo(json.dumps(out))


@cds.command("list-clients")
def cds_list_clients(tenant: TenantOpt = "default") -> None:
    """The tenant's CDS clients."""
    from careloop.services.cds.clients import client_json, clients_of

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        rows = clients_of(session, tenant)
        if not rows:
            typer.echo("no CDS clients")
        for row in rows:
            typer.echo(json.dumps(client_json(row)))
