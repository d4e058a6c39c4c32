"""``careloop clinicians``: clinician accounts that sign in at /login: add, list."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from careloop.services.cli.audited import note_ids
from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

clinicians = PlainTyper(help="Clinician accounts (sign in at /login).", no_args_is_help=True)


def _tenant_id(session: object, name: str) -> str | None:
    """The id of the tenant called (or with the id) ``name``; ``default`` is made if new."""
    from sqlmodel import Session, or_, select

    from careloop.services.tenancy.models import Tenant
    from careloop.services.tenancy.service import DEFAULT_TENANT, get_or_create_tenant

    assert isinstance(session, Session)
    if name == DEFAULT_TENANT:
        return get_or_create_tenant(session, name).id
    found = session.exec(select(Tenant).where(or_(Tenant.name == name, Tenant.id == name))).first()
    return found.id if found else None


@clinicians.command("add")
def add_clinician_cmd(
    email: Annotated[str, typer.Argument(help="The sign-in email (stored lower-case).")],
    name: Annotated[str, typer.Option(help="The name shown, e.g. 'Dr Jane Doe'.")],
    practitioner: Annotated[
        str | None, typer.Option(help="Practitioner/ID: recorded as who acted.")
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant (organization) name.")] = "default",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Add a clinician; the password is read from stdin (never an argument) and only hashed."""
    from careloop.services.clinicians.service import ClinicianError, add_clinician

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            tenant_id = _tenant_id(session, tenant)
            if tenant_id is None:
                raise ClinicianError(f"no tenant named {tenant}")
            clinician = add_clinician(session, tenant_id, email, name, password, practitioner)
            note_ids(f"clinician:{clinician.id}")
            out = {
                "id": clinician.id,
                "email": clinician.email,
                "name": clinician.name,
                "practitioner": clinician.practitioner,
                "tenant": clinician.tenant_id,
                "password": clinician.password_hash is not None,
                "sign_in": get_settings().base_url.rstrip("/") + "/login",
            }
    except ClinicianError as exc:
        typer.echo(f"careloop: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(out))


@clinicians.command("list")
def list_clinicians_cmd(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's clinicians.")] = None,
) -> None:
    """List clinicians, one JSON object a line (never password hashes)."""
    from careloop.services.clinicians.service import list_clinicians

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        tenant_id = _tenant_id(session, tenant) if tenant is not None else None
        if tenant is not None and tenant_id is None:
            typer.echo(f"careloop: no tenant named {tenant}", err=True)
            raise typer.Exit(2)
        rows = list_clinicians(session, tenant_id)
        if not rows:
            typer.echo("no clinicians")
        for row in rows:
            out = {
                "id": row.id,
                "email": row.email,
                "name": row.name,
                "practitioner": row.practitioner,
                "fhir_user": row.fhir_user,
                "tenant": row.tenant_id,
                "active": row.active,
                "password": row.password_hash is not None,
                "locked_until": row.locked_until.isoformat() if row.locked_until else None,
                "last_login_at": row.last_login_at.isoformat() if row.last_login_at else None,
            }
            typer.echo(json.dumps(out))
