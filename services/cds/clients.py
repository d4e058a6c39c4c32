"""Registering the EHRs (CDS clients) trusted to call careloop's CDS services."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlmodel import Session, select

from careloop.integrations.egress import DestinationPolicy, DestinationRefused
from careloop.services.cds.models import CdsClient
from careloop.services.ehr.service import find_connection
from careloop.services.tenancy.service import get_or_create_tenant

_ISS = re.compile(r"^[^\s\x00-\x1f\x7f]{1,500}$")


class CdsClientError(Exception):
    """A registration careloop refuses; ``field`` names the option at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def add_client(
    session: Session,
    iss: str,
    jwks_url: str,
    tenant_name: str = "default",
    ehr_name: str | None = None,
    *,
    destinations: DestinationPolicy,
) -> CdsClient:
    """Trust JWTs from ``iss`` signed by keys of the JWKS at ``jwks_url``, for the tenant.

    ``jwks_url`` must pass the egress ``destinations`` rules now (and again at every fetch);
    ``ehr_name`` names the tenant's EHR connection whose patient links resolve the EHR's ids.
    """
    if not _ISS.match(iss):
        raise CdsClientError("iss", "the issuer is 1 to 500 characters without whitespace")
    if len(jwks_url) > 2000 or not jwks_url.startswith(("https://", "http://")):
        raise CdsClientError("jwks_url", "the JWKS URL must be http(s), at most 2000 characters")
    try:
        destinations.check_url(jwks_url)
    except DestinationRefused as exc:
        raise CdsClientError("jwks_url", f"JWKS URL refused: {exc.message}") from exc
    tenant = get_or_create_tenant(session, tenant_name)
    connection_id = None
    if ehr_name is not None:
        connection = find_connection(session, tenant.id, ehr_name, required=False)
        if connection is None:
            raise CdsClientError("ehr", f"no EHR called {ehr_name} in tenant {tenant_name}")
        connection_id = connection.id
    if session.exec(select(CdsClient).where(CdsClient.iss == iss)).first() is not None:
        raise CdsClientError("iss", "a CDS client with this issuer exists already")
    client = CdsClient(
        id=str(uuid.uuid4()),
        tenant_id=tenant.id,
        iss=iss,
        jwks_url=jwks_url,
        connection_id=connection_id,
    )
    session.add(client)
    session.flush()
    return client


def clients_of(session: Session, tenant_name: str) -> list[CdsClient]:
    """The tenant's CDS clients, oldest first."""
    tenant = get_or_create_tenant(session, tenant_name)
    return list(
        session.exec(
            select(CdsClient).where(CdsClient.tenant_id == tenant.id).order_by(CdsClient.created_at)  # type: ignore[arg-type]
        ).all()
    )


def client_json(client: CdsClient) -> dict[str, Any]:
    """A CDS client as the CLI prints it."""
    return {
        "id": client.id,
        "iss": client.iss,
        "jwks_url": client.jwks_url,
        "connection_id": client.connection_id,
        "active": client.active,
    }
