"""``careloop export --deidentify``: a HIPAA Safe Harbor research export as NDJSON files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings

MIN_KEY_LENGTH = 32
KEY_SETTING = "CARELOOP_DEIDENTIFY_KEY"


def _refuse(message: str) -> typer.Exit:
    typer.echo(f"careloop export: {message}", err=True)
    return typer.Exit(2)


def _key(key_file: Path | None) -> bytes:
    """The hashing key: the key file's content (one line), else the setting; 32+ characters."""
    if key_file is not None:
        try:
            text = key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise _refuse("cannot read --key-file") from None
        where = "--key-file"
    else:
        secret = get_settings().deidentify_key
        text = secret.get_secret_value().strip() if secret is not None else ""
        where = KEY_SETTING
    if not text:
        raise _refuse(f"no de-identification key: set {KEY_SETTING} or pass --key-file")
    if len(text) < MIN_KEY_LENGTH:
        raise _refuse(f"the key of {where} must be at least {MIN_KEY_LENGTH} characters")
    return text.encode()


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    from careloop.services.common.fhirtime import FhirTimeError, parse_fhir_datetime_range

    try:
        lo, _ = parse_fhir_datetime_range(value)
    except FhirTimeError:
        raise _refuse("--since must be a FHIR instant, dateTime or date") from None
    return lo


def _tenant(tenant: str) -> str:
    from sqlmodel import Session, select

    from careloop.services.tenancy.models import Tenant

    with Session(get_engine()) as session:
        found = session.exec(select(Tenant.id).where(Tenant.id == tenant)).first()
    if found is None:
        raise _refuse("no tenant with that id")
    return found


def export_cmd(
    tenant: Annotated[str, typer.Option(help="The tenant id.")],
    out: Annotated[Path, typer.Option(help="Directory for the <Type>.ndjson files (created).")],
    deidentify: Annotated[
        bool, typer.Option("--deidentify", help="Required: the export is de-identified.")
    ] = False,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type", metavar="TYPE", help="A resource type to export (repeat); default: all."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only resources changed at or after this instant.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(help=f"File holding the hashing key (default: {KEY_SETTING})."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a directory that is not empty.")
    ] = False,
) -> None:
    """Export the patients whose consent permits research, de-identified (HIPAA Safe Harbor).

    Free text, names, contacts, places below the state and dates but the year are removed.
    """
    from careloop.services.consents.policy import tenant_defaults
    from careloop.services.research import (
        DEFAULT_TYPES,
        EXPORTABLE_TYPES,
        ExportRequest,
        run_export,
    )

    if not deidentify:
        raise _refuse(
            "only --deidentify exports exist here; identified bulk export is the FHIR $export API"
        )
    chosen = tuple(dict.fromkeys(types)) if types else DEFAULT_TYPES
    unknown = [t for t in chosen if t not in EXPORTABLE_TYPES]
    if unknown:
        raise _refuse(f"--type must be one of {', '.join(sorted(EXPORTABLE_TYPES))}")
    key = _key(key_file)
    after = _since(since)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise _refuse("--out must be a new or empty directory (or pass --force)")
    upgrade(get_engine())
    tenant_id = _tenant(tenant)
    request = ExportRequest(
        tenant_id=tenant_id,
        out_dir=out,
        key=key,
        defaults=tenant_defaults(get_settings().consent_defaults, tenant_id),
        today=datetime.now(UTC).date(),
        types=chosen,
        since=after,
    )
    result = run_export(get_engine(), request)
    for rtype, count in result.counts.items():
        typer.echo(f"{rtype}: {count}")
    typer.echo(
        f"patients exported: {result.patients_exported}, withheld: {result.patients_withheld}"
    )
    if result.skipped:
        typer.echo(f"left out (not valid FHIR once de-identified): {result.skipped}")
