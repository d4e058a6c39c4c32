"""The app API for consents: ``/v1/consents`` (record, revoke, read back what is in force)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from careloop.services.auth.tokens import Principal
from careloop.services.common.body import RawBody, read_json_body, validation_issues
from careloop.services.common.errors import ApiError
from careloop.services.common.idempotency import ApiResult, result_response, run_unit_of_work
from careloop.services.common.openapi import errors, json_body, json_ok
from careloop.services.consents.policy import tenant_defaults
from careloop.services.consents.schemas import ConsentIn
from careloop.services.consents.service import in_force, record_consent, revoke_consent
from careloop.services.deps import SessionDep, SettingsDep, require
from careloop.services.patients.service import find_patients

router = APIRouter(prefix="/v1/consents", tags=["consents"], responses=errors(400, 401, 403, 422))
_consent = TypeAdapter(ConsentIn)
BodyDep = Annotated[RawBody, Depends(read_json_body)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]
ConsentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]+$")]
CanCreate = Annotated[Principal, Depends(require("Consent", "c"))]
CanUpdate = Annotated[Principal, Depends(require("Consent", "u"))]
CanRead = Annotated[Principal, Depends(require("Consent", "r"))]
_CONSENT = {"type": "object", "description": "A FHIR R4 Consent"}
_IN_FORCE = {
    "type": "object",
    "properties": {
        "patient": {"type": ["string", "null"]},
        "purposes": {"type": "object"},
        "consents": {"type": "array", "items": _CONSENT},
    },
}


def _json(data: Any) -> bytes:
    return orjson.dumps(data)


@router.post(
    "",
    status_code=201,
    summary="Record a patient's decision to permit or deny one purpose",
    openapi_extra=json_body(ConsentIn),
    responses={
        201: json_ok("Recorded: the FHIR Consent", _CONSENT),
        200: json_ok("Already recorded (a retry): the first Consent", _CONSENT),
        **errors(409, 413, 415, 422, 503),
    },
)
def create_consent(
    body: BodyDep,
    principal: CanCreate,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Store the decision as a FHIR Consent; it supersedes the patient's earlier one for the
    purpose and is honoured at once by every exit."""
    try:
        consent = _consent.validate_python(body.data)
    except ValidationError as exc:
        raise ApiError(422, validation_issues(exc)) from exc

    def work() -> ApiResult:
        recorded = record_consent(session, principal, consent)
        location = f"{settings.fhir_base_url}/Consent/{recorded.consent.id}"
        return ApiResult(recorded.status, _json(recorded.consent.as_dict()), location)

    result = run_unit_of_work(
        session, principal, work, body=body.raw, idempotency_key=idempotency_key
    )
    return result_response(result)


def _revoke(consent_id: str, principal: Principal, session: SessionDep) -> Response:
    def work() -> ApiResult:
        return ApiResult(
            200,
            _json(
                revoke_consent(
                    session, principal.tenant_id, consent_id, f"client:{principal.client_id}"
                ).as_dict()
            ),
        )

    return result_response(
        run_unit_of_work(session, principal, work, body=f"revoke {consent_id}".encode())
    )


@router.post(
    "/{consent_id}/revoke",
    summary="Revoke a consent (effective at once)",
    responses={200: json_ok("The Consent, now inactive", _CONSENT), **errors(404, 503)},
)
def revoke(consent_id: ConsentId, principal: CanUpdate, session: SessionDep) -> Response:
    """Make the Consent inactive: from now on it decides nothing, queued work included."""
    return _revoke(consent_id, principal, session)


@router.delete(
    "/{consent_id}",
    summary="Revoke a consent (same as POST .../revoke)",
    responses={200: json_ok("The Consent, now inactive", _CONSENT), **errors(404, 503)},
)
def delete(consent_id: ConsentId, principal: CanUpdate, session: SessionDep) -> Response:
    """Revocation: the Consent stays on record as inactive (the history is kept)."""
    return _revoke(consent_id, principal, session)


@router.get(
    "",
    summary="What is in force for a patient, per purpose",
    responses={200: json_ok("Per purpose: decision and source; the active Consents", _IN_FORCE)},
)
def read_in_force(
    principal: CanRead,
    session: SessionDep,
    settings: SettingsDep,
    system: Annotated[str, Query(alias="patient.system", min_length=1, max_length=300)],
    value: Annotated[str, Query(alias="patient.value", min_length=1, max_length=200)],
) -> Response:
    """Each purpose's decision now: from the deciding Consent, else the tenant policy."""
    patient_id = find_patients(session, principal.tenant_id, [(system, value)]).get((system, value))
    defaults = tenant_defaults(settings.consent_defaults, principal.tenant_id)
    answer = in_force(session, principal.tenant_id, patient_id, defaults)
    return Response(_json(answer), media_type="application/json")
