"""Admin API for EHR connections and patient links (scope ``careloop/admin``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from sqlmodel import select
from starlette.responses import Response

from careloop.services.audit.service import record_admin
from careloop.services.common.body import RawBody, parse_as, read_json_body
from careloop.services.common.constrained import Name100, Text200, Text2000, Uri500
from careloop.services.common.egress import destination_policy
from careloop.services.common.errors import ApiError
from careloop.services.common.openapi import errors, json_body, json_ok
from careloop.services.deps import AdminDep, SessionDep, SettingsDep
from careloop.services.ehr.failures import failure_json
from careloop.services.ehr.links import link_manually
from careloop.services.ehr.models import EhrConnection, EhrFailure
from careloop.services.ehr.service import (
    ConnectionError_,
    add_connection,
    connection_json,
    connection_status,
    find_connection,
    remove_connection,
)
from careloop.services.store.repository import ResourceStore
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import commit

router = APIRouter(prefix="/admin", tags=["admin"], responses=errors(400, 401, 403, 422))
BodyDep = Annotated[RawBody, Depends(read_json_body)]
ConnectionName = Annotated[str, Path(max_length=100)]


class ConnectionIn(BaseModel):
    """A new EHR connection."""

    model_config = ConfigDict(extra="forbid")

    name: Name100
    fhir_base_url: Annotated[Uri500, Field(pattern=r"^https?://[^/?#]+")]
    client_id: Text200
    scope: Text2000
    alg: Literal["RS384", "ES384"] = "RS384"


class LinkIn(BaseModel):
    """An explicit patient link."""

    model_config = ConfigDict(extra="forbid")

    ehr: Name100
    patient: str = Field(min_length=9, max_length=80, pattern=r"^Patient/[A-Za-z0-9\-.]{1,64}$")
    ehr_patient: str = Field(min_length=9, max_length=80, pattern=r"^Patient/[A-Za-z0-9\-.]{1,64}$")


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _tenant_name(session: SessionDep, tenant_id: str) -> str:
    tenant = session.get(Tenant, tenant_id)
    assert tenant is not None
    return tenant.name


def _find(session: SessionDep, tenant_id: str, name: str) -> Any:
    try:
        return find_connection(session, tenant_id, name)
    except ConnectionError_ as exc:
        raise ApiError.not_found(f"EHR connection {name}") from exc


@router.post(
    "/ehr-connections",
    status_code=201,
    summary="Connect an EHR",
    openapi_extra=json_body(ConnectionIn),
    responses={201: json_ok("The connection"), **errors(413, 415)},
)
def create(
    body: BodyDep, principal: AdminDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Register an EHR (SMART Backend Services); careloop's JWKS is at /.well-known/jwks.json."""
    data = parse_as(TypeAdapter(ConnectionIn), body.data)
    try:
        connection = add_connection(
            session,
            data.name,
            data.fhir_base_url,
            data.client_id,
            data.scope,
            _tenant_name(session, principal.tenant_id),
            data.alg,
            destinations=destination_policy(settings),
        )
    except ConnectionError_ as exc:
        raise ApiError.invalid(exc.field, exc.message) from exc
    record_admin(session, principal, "ehr-connections.create", f"ehr:{connection.id}")
    commit(session)
    return _json(connection_json(connection), 201)


@router.get(
    "/ehr-connections",
    summary="List EHR connections",
    responses={200: json_ok("The tenant's connections")},
)
def list_connections(principal: AdminDep, session: SessionDep) -> Response:
    """The tenant's connections."""
    rows = session.exec(
        select(EhrConnection).where(EhrConnection.tenant_id == principal.tenant_id)
    ).all()
    return _json({"connections": [connection_json(c) for c in rows]})


@router.get(
    "/ehr-connections/{name}",
    summary="Status of one EHR connection",
    responses={200: json_ok("Links, writes, failures and circuit state"), **errors(404)},
)
def status(name: ConnectionName, principal: AdminDep, session: SessionDep) -> Response:
    """Links, writes, failures and circuit state."""
    return _json(connection_status(session, _find(session, principal.tenant_id, name)))


@router.delete(
    "/ehr-connections/{name}",
    status_code=204,
    summary="Stop syncing with an EHR",
    responses={204: {"description": "Deactivated"}, **errors(404)},
)
def remove(name: ConnectionName, principal: AdminDep, session: SessionDep) -> Response:
    """Deactivate the connection (its history is kept)."""
    connection = _find(session, principal.tenant_id, name)
    remove_connection(session, connection)
    record_admin(session, principal, "ehr-connections.remove", f"ehr:{connection.id}")
    commit(session)
    return Response(status_code=204)


@router.get(
    "/ehr-connections/{name}/failures",
    summary="Writes the EHR refused",
    responses={200: json_ok("Refused writes with the EHR's reasons"), **errors(404)},
)
def failures(name: ConnectionName, principal: AdminDep, session: SessionDep) -> Response:
    """Refused writes with the EHR's reasons."""
    connection = _find(session, principal.tenant_id, name)
    rows = session.exec(select(EhrFailure).where(EhrFailure.connection_id == connection.id)).all()
    return _json({"failures": [failure_json(f) for f in rows]})


@router.post(
    "/patient-links",
    status_code=201,
    summary="Link a patient to an EHR Patient",
    openapi_extra=json_body(LinkIn),
    responses={201: json_ok("The link"), **errors(404, 413, 415)},
)
def link(body: BodyDep, principal: AdminDep, session: SessionDep) -> Response:
    """Link explicitly (for patients no identifier matched, or several did)."""
    data = parse_as(TypeAdapter(LinkIn), body.data)
    connection = _find(session, principal.tenant_id, data.ehr)
    patient_id = data.patient.removeprefix("Patient/")
    if ResourceStore(session, principal.tenant_id).read("Patient", patient_id) is None:
        raise ApiError.invalid("patient", f"{data.patient} is not known")
    result = link_manually(
        session, connection, patient_id, data.ehr_patient.removeprefix("Patient/")
    )
    record_admin(
        session, principal, "patient-links.create", f"ehr:{connection.id}", f"Patient/{patient_id}"
    )
    commit(session)
    return _json(
        {
            "ehr": data.ehr,
            "patient": data.patient,
            "ehr_patient": f"Patient/{result.ehr_patient_id}",
            "state": result.state,
        },
        201,
    )
