"""``careloop ehr``, ``careloop patients`` and ``careloop keys``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlmodel import select

from careloop.services.cli.audited import note_ids
from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

ehr = PlainTyper(help="EHR connections over SMART Backend Services.", no_args_is_help=True)
patients = PlainTyper(help="Patients and their EHR links.", no_args_is_help=True)
keys = PlainTyper(
    help="careloop's signing keys (published at /.well-known/jwks.json).", no_args_is_help=True
)
TenantOpt = Annotated[str, typer.Option(help="Tenant (organization) name.")]
EhrName = Annotated[str, typer.Argument(help="The EHR connection's name, e.g. hospital.")]


def tenant_id_named(session: object, name: str) -> str:
    """The id of the tenant ``name`` (created if new)."""
    from careloop.services.tenancy.service import get_or_create_tenant

    return get_or_create_tenant(session, name).id  # type: ignore[arg-type]


def fail(message: str) -> None:
    """Stop the command with ``message`` on stderr and exit status 2."""
    typer.echo(message, err=True)
    raise typer.Exit(2)


@ehr.command("add")
def ehr_add(
    name: EhrName,
    fhir_base_url: Annotated[str, typer.Option(help="The EHR's FHIR base URL.")],
    client_id: Annotated[str, typer.Option(help="careloop's client id at the EHR.")],
    scope: Annotated[str, typer.Option(help='e.g. "system/Observation.cruds system/CarePlan.rs"')],
    tenant: TenantOpt = "default",
    alg: Annotated[str, typer.Option(help="RS384 or ES384.")] = "RS384",
    launch_client_id: Annotated[
        str | None, typer.Option(help="careloop's SMART app client id at this EHR.")
    ] = None,
    launch_client_secret: Annotated[
        str | None, typer.Option(help="Its secret, for a confidential app (stored encrypted).")
    ] = None,
) -> None:
    """Connect an EHR; register careloop's JWKS URL (<base>/.well-known/jwks.json) there."""
    from careloop.services.common.egress import destination_policy
    from careloop.services.ehr.service import ConnectionError_, add_connection, connection_json
    from careloop.services.keys.service import ensure_keys

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            connection = add_connection(
                session,
                name,
                fhir_base_url,
                client_id,
                scope,
                tenant,
                alg,
                launch_client_id,
                launch_client_secret,
                get_settings().secret_key,
                destinations=destination_policy(get_settings()),
            )
            ensure_keys(session, get_settings().secret_key)
            out = connection_json(connection)
    except ConnectionError_ as exc:
        fail(f"{exc.field}: {exc.message}")
    out["jwks_url"] = get_settings().base_url.rstrip("/") + "/.well-known/jwks.json"
    typer.echo(json.dumps(out))


@ehr.command("list")
def ehr_list(tenant: TenantOpt = "default") -> None:
    """The tenant's EHR connections."""
    from careloop.services.ehr.models import EhrConnection
    from careloop.services.ehr.service import connection_json

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        rows = session.exec(
            select(EhrConnection).where(EhrConnection.tenant_id == tenant_id_named(session, tenant))
        ).all()
        if not rows:
            typer.echo("no EHR connections")
        for row in rows:
            typer.echo(json.dumps(connection_json(row)))


@ehr.command("status")
def ehr_status(name: EhrName, tenant: TenantOpt = "default") -> None:
    """Linked and unlinked patients, written and waiting resources, failures, circuit."""
    from careloop.services.ehr.service import ConnectionError_, connection_status, find_connection

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            connection = find_connection(session, tenant_id_named(session, tenant), name)
            assert connection is not None
            typer.echo(json.dumps(connection_status(session, connection), indent=2))
    except ConnectionError_ as exc:
        fail(exc.message)


@ehr.command("remove")
def ehr_remove(name: EhrName, tenant: TenantOpt = "default") -> None:
    """Stop syncing with an EHR (history is kept)."""
    from careloop.services.ehr.service import ConnectionError_, find_connection, remove_connection

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            connection = find_connection(session, tenant_id_named(session, tenant), name)
            assert connection is not None
            remove_connection(session, connection)
    except ConnectionError_ as exc:
        fail(exc.message)
    typer.echo(json.dumps({"removed": name}))


@ehr.command("failures")
def ehr_failures(name: EhrName, tenant: TenantOpt = "default") -> None:
    """Writes the EHR refused, with its reasons."""
    from careloop.services.ehr.failures import failure_json
    from careloop.services.ehr.models import EhrFailure
    from careloop.services.ehr.service import ConnectionError_, find_connection

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            connection = find_connection(session, tenant_id_named(session, tenant), name)
            assert connection is not None
            rows = session.exec(
                select(EhrFailure).where(EhrFailure.connection_id == connection.id)
            ).all()
            if not rows:
                typer.echo(f"no refused writes for {name}")
            for row in rows:
                typer.echo(json.dumps(failure_json(row)))
    except ConnectionError_ as exc:
        fail(exc.message)


@ehr.command("replay")
def ehr_replay(
    failure_id: Annotated[int, typer.Argument(help="The failure's id (from ehr failures).")],
) -> None:
    """Queue a refused write again, after fixing its cause."""
    from careloop.services.ehr.failures import replay_failure
    from careloop.services.ehr.models import EhrFailure

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        failure = session.get(EhrFailure, failure_id)
        if failure is None or failure.replayed_at is not None:
            fail(f"no unreplayed failure {failure_id}")
        assert failure is not None
        replay_failure(session, failure)
    typer.echo(json.dumps({"replayed": failure_id}))


@patients.command("link")
def patients_link(
    patient: Annotated[str, typer.Option(help="The careloop patient, Patient/<id>.")],
    ehr_patient: Annotated[str, typer.Option(help="The EHR patient, Patient/<id in the EHR>.")],
    ehr_name: Annotated[str, typer.Option("--ehr", help="The EHR connection name.")],
    tenant: TenantOpt = "default",
) -> None:
    """Link a patient to an EHR Patient explicitly; waiting data is then written."""
    from careloop.services.ehr.links import link_manually
    from careloop.services.ehr.service import ConnectionError_, find_connection

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            connection = find_connection(session, tenant_id_named(session, tenant), ehr_name)
            assert connection is not None
            link_manually(
                session,
                connection,
                patient.removeprefix("Patient/"),
                ehr_patient.removeprefix("Patient/"),
            )
    except ConnectionError_ as exc:
        fail(exc.message)
    typer.echo(json.dumps({"patient": patient, "ehr_patient": ehr_patient, "state": "linked"}))


@keys.command("rotate")
def keys_rotate(alg: Annotated[str | None, typer.Option(help="RS384 or ES384.")] = None) -> None:
    """New signing keys; old ones stay published for CARELOOP_KEY_GRACE_HOURS after last use."""
    from careloop.services.keys.service import rotate

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        new = rotate(session, get_settings().secret_key, alg)
        note_ids(*(f"key:{k.kid}" for k in new))
        typer.echo(json.dumps({"active": [k.kid for k in new]}))


@keys.command("list")
def keys_list() -> None:
    """All signing keys (public parts and state)."""
    from careloop.services.keys.models import SigningKey

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        for row in session.exec(select(SigningKey)).all():
            typer.echo(
                json.dumps(
                    {
                        "kid": row.kid,
                        "alg": row.alg,
                        "active": row.active,
                        "created_at": row.created_at.isoformat(),
                        "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None,
                    }
                )
            )


@keys.command("reencrypt")
def keys_reencrypt(
    old_secret_file: Annotated[
        typer.FileText | None, typer.Option(help="File holding the previous secret key.")
    ] = None,
    old_secret: Annotated[
        str | None,
        typer.Option(envvar="CARELOOP_OLD_SECRET_KEY", help="The previous secret key."),
    ] = None,
) -> None:
    """Re-encrypt stored keys made with a previous CARELOOP_SECRET_KEY under the current one."""
    from careloop.services.keys.rekey import reencrypt_all, unreadable

    previous = old_secret_file.read().strip() if old_secret_file else old_secret
    if not previous:
        fail("give --old-secret-file FILE or set CARELOOP_OLD_SECRET_KEY")
        return
    settings = get_settings()
    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        moved = reencrypt_all(session, previous, settings.secret_key)
        left = unreadable(session, settings.secret_key)
    typer.echo(
        json.dumps(
            {
                "reencrypted": moved,
                "unreadable_signing_keys": left.signing_keys,
                "unreadable_connections": left.connections,
            }
        )
    )
    if left:
        raise typer.Exit(1)
