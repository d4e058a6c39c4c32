"""``careloop notify``: where a tenant's alerts go."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from careloop.services.cli.audited import note_ids
from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

notify = PlainTyper(help="Where alerts go.", no_args_is_help=True)


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
            note_ids(f"route:{route.id}")
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
