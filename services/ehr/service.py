"""Managing EHR connections and patient links."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from careloop.integrations.egress import DestinationPolicy, DestinationRefused
from careloop.services.auth.scopes import ScopeError, parse_scopes
from careloop.services.common.errors import FieldError
from careloop.services.ehr.models import EhrConnection, EhrFailure, EhrWrite, PatientLink
from careloop.services.ehr.vocabulary import LinkState, WriteState
from careloop.services.keys.service import ALGORITHMS, encrypt_secret
from careloop.services.tenancy.service import get_or_create_tenant


class ConnectionError_(FieldError):
    """A connection that cannot be added or found; ``field`` names the problem."""


def add_connection(
    session: Session,
    name: str,
    fhir_base_url: str,
    client_id: str,
    scope: str,
    tenant_name: str = "default",
    alg: str = "RS384",
    launch_client_id: str | None = None,
    launch_client_secret: str | None = None,
    secret_key: str = "",
    *,
    destinations: DestinationPolicy,
) -> EhrConnection:
    """Register an EHR; careloop discovers its token endpoint on first use.

    ``launch_client_id`` (and a secret for a confidential app) let clinicians launch careloop
    from this EHR (SMART App Launch). The FHIR base URL must pass the egress ``destinations``
    rules now (https in production, a public address unless allow-listed) and again on every
    connection; so must the token endpoint its smart-configuration names.
    """
    if len(fhir_base_url) > 2000 or not fhir_base_url.startswith(("https://", "http://")):
        raise ConnectionError_("fhir_base_url", "the FHIR base URL must be http(s)")
    try:
        destinations.check_url(fhir_base_url)
    except DestinationRefused as exc:
        raise ConnectionError_("fhir_base_url", f"FHIR base URL refused: {exc.message}") from exc
    if alg not in ALGORITHMS:
        raise ConnectionError_("alg", f"alg must be one of {', '.join(ALGORITHMS)}")
    try:
        scopes = parse_scopes(scope)
    except ScopeError as exc:
        raise ConnectionError_("scope", str(exc)) from exc
    if any(s.context != "system" for s in scopes):
        raise ConnectionError_("scope", "Backend Services use system/ scopes")
    tenant = get_or_create_tenant(session, tenant_name)
    if find_connection(session, tenant.id, name, required=False) is not None:
        raise ConnectionError_("name", f"an EHR called {name} exists already")
    connection = EhrConnection(
        id=str(uuid.uuid4()),
        tenant_id=tenant.id,
        name=name,
        fhir_base_url=fhir_base_url.rstrip("/"),
        client_id=client_id,
        scope=" ".join(scope.split()),
        alg=alg,
        launch_client_id=launch_client_id,
        launch_client_secret=encrypt_secret(secret_key, launch_client_secret)
        if launch_client_secret
        else None,
    )
    session.add(connection)
    session.flush()
    return connection


def find_connection(
    session: Session, tenant_id: str, name: str, required: bool = True
) -> EhrConnection | None:
    """The tenant's connection called ``name``."""
    connection = session.exec(
        select(EhrConnection).where(
            EhrConnection.tenant_id == tenant_id, EhrConnection.name == name
        )
    ).first()
    if connection is None and required:
        raise ConnectionError_("name", f"no EHR called {name}")
    return connection


def active_connections(session: Session, tenant_id: str) -> list[EhrConnection]:
    """The tenant's active connections."""
    return list(
        session.exec(
            select(EhrConnection).where(
                EhrConnection.tenant_id == tenant_id, col(EhrConnection.active)
            )
        ).all()
    )


def active_connection_ids(session: Session, tenant_id: str) -> list[str]:
    """Ids of the tenant's active connections (a light query: it runs on every report)."""
    table = EhrConnection.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        select(table.c.id).where(table.c.tenant_id == tenant_id, table.c.active.is_(True))
    ).all()
    return [str(r.id) for r in rows]


def remove_connection(session: Session, connection: EhrConnection) -> None:
    """Stop syncing with an EHR (its history is kept)."""
    connection.active = False
    session.add(connection)


@dataclass(frozen=True)
class ConnectionStatus:
    """What an operator needs to see about one EHR."""

    data: dict[str, Any]


def connection_status(session: Session, connection: EhrConnection) -> dict[str, Any]:
    """Counts of linked/unlinked patients, written/waiting resources, failures, circuit."""

    def count(model: Any, *where: Any) -> int:
        return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

    links = {
        state.value: count(
            PatientLink, PatientLink.connection_id == connection.id, PatientLink.state == state
        )
        for state in LinkState
    }
    writes = {
        state.value: count(
            EhrWrite, EhrWrite.connection_id == connection.id, EhrWrite.state == state
        )
        for state in WriteState
    }
    failures = count(
        EhrFailure, EhrFailure.connection_id == connection.id, col(EhrFailure.replayed_at).is_(None)
    )
    return {
        "name": connection.name,
        "fhir_base_url": connection.fhir_base_url,
        "client_id": connection.client_id,
        "scope": connection.scope,
        "alg": connection.alg,
        "active": connection.active,
        "token_endpoint": connection.token_endpoint,
        "patients": links,
        "resources": writes,
        "open_failures": failures,
        "consecutive_failures": connection.consecutive_failures,
        "circuit_open_until": connection.circuit_open_until.isoformat()
        if connection.circuit_open_until
        else None,
        "last_success_at": connection.last_success_at.isoformat()
        if connection.last_success_at
        else None,
        "last_error": connection.last_error,
    }


def connection_json(connection: EhrConnection) -> dict[str, Any]:
    """The public JSON of a connection."""
    return {
        "id": connection.id,
        "name": connection.name,
        "fhir_base_url": connection.fhir_base_url,
        "client_id": connection.client_id,
        "scope": connection.scope,
        "alg": connection.alg,
        "active": connection.active,
    }
