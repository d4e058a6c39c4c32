"""``GET /fhir/AuditEvent`` and ``GET /fhir/Patient/{id}/$access-report``: administrators only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from careloop.services.audit.events import AuditQuery, access_report, audit_event, find_records
from careloop.services.audit.service import record_access
from careloop.services.common.errors import ApiError, Issue
from careloop.services.common.openapi import json_ok
from careloop.services.deps import AdminDep, SessionDep
from careloop.services.fhirapi.inputs import resource_id
from careloop.services.fhirapi.openapi import ANY_RESOURCE, responses
from careloop.services.fhirapi.responses import fhir_json_response

router = APIRouter()


def _instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, [Issue("processing", "date must be ISO 8601", "date")]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _dates(values: list[str]) -> tuple[datetime | None, datetime | None]:
    since = until = None
    for value in values:
        prefix, rest = value[:2], value[2:]
        if prefix in ("ge", "gt"):
            since = _instant(rest)
        elif prefix in ("le", "lt"):
            until = _instant(rest)
        else:  # a day: the whole of it
            since = _instant(value)
            until = since + timedelta(days=1) if len(value) == 10 else since
    return since, until


@router.get(
    "/AuditEvent",
    summary="Search the audit trail (careloop/admin)",
    responses=responses({200: ("A searchset Bundle of AuditEvents", ANY_RESOURCE)}, 400, 401, 403),
)
def search_audit_events(
    principal: AdminDep,
    session: SessionDep,
    patient: str | None = None,
    entity: str | None = None,
    agent: str | None = None,
    date: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """The tenant's audit entries as AuditEvents, newest first (patient, entity, agent, date)."""
    if patient is not None:
        entity = f"Patient/{resource_id(patient.removeprefix('Patient/'))}"
    since, until = _dates(date or [])
    records = find_records(session, principal.tenant_id, AuditQuery(entity, agent, since, until))
    # Reading the trail is an access too (after the search, so it does not find itself).
    record_access(session, principal, [entity] if entity else [], "search AuditEvent")
    return fhir_json_response(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(records),
            "entry": [{"resource": audit_event(r), "search": {"mode": "match"}} for r in records],
        }
    )


@router.get(
    "/Patient/{pid}/$access-report",
    summary="Who saw this patient's data (careloop/admin)",
    responses={200: json_ok("The access report"), **responses({}, 400, 401, 403)},
)
def patient_access_report(
    pid: str, principal: AdminDep, session: SessionDep, since: str | None = None
) -> Response:
    """Accounting of disclosures: every access to or sending of the patient's data."""
    resource_id(pid)
    entries = access_report(session, principal.tenant_id, pid, _instant(since) if since else None)
    record_access(session, principal, [f"Patient/{pid}"], "$access-report")
    body = {"patient": f"Patient/{pid}", "entries": entries}
    return Response(orjson.dumps(body), media_type="application/json")
