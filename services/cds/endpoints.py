"""CDS Hooks 2.0: ``GET /cds-services``, the ``patient-view`` service and its feedback.

Every call, discovery included, must carry the EHR's signed JWT (`careloop.services.cds.auth`);
without a valid one the answer is 401 and says nothing of why. The ``jti`` is committed before
the body is looked at, so a JWT is used once whatever its call becomes.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response

from careloop.services.cds.auth import CdsAuthError, CdsCaller, authenticate, log_refusal
from careloop.services.cds.schemas import CdsFeedbackRequest, CdsHookRequest
from careloop.services.cds.service import SERVICE_ID, discovery, patient_cards, record_feedback
from careloop.services.common.body import RawBody, check_json, read_json_body, validation_issues
from careloop.services.common.errors import ApiError, Issue
from careloop.services.common.openapi import errors, json_body, json_ok
from careloop.services.consents.policy import tenant_defaults
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.unit_of_work import commit

MAX_HOOK_BODY = 256 * 1024
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="careloop-cds"'}
_UNAUTHORIZED = {
    "description": "No valid CDS client JWT (the body never says why)",
    "content": errors(401)[401]["content"],
}

router = APIRouter(tags=["cds-hooks"], responses={**errors(400, 413, 415, 422), 401: _UNAUTHORIZED})


def cds_caller(request: Request, session: SessionDep, settings: SettingsDep) -> CdsCaller:
    """The trusted EHR behind the call (401 otherwise), its ``jti`` committed as used."""
    audience = settings.base_url.rstrip("/") + request.url.path
    try:
        caller = authenticate(session, settings, request.headers.get("authorization"), audience)
    except CdsAuthError as exc:
        commit(session)  # an egress refusal audited while fetching keys stays recorded
        log_refusal(exc)
        raise ApiError(401, [Issue("login", "unauthorized")], _CHALLENGE) from None
    commit(session)
    return caller


CallerDep = Annotated[CdsCaller, Depends(cds_caller)]
# Declared after the caller, so an unauthenticated call is refused before its body is read.
BodyDep = Annotated[RawBody, Depends(read_json_body)]
_HOOK = TypeAdapter(CdsHookRequest)
_FEEDBACK = TypeAdapter(CdsFeedbackRequest)


def _parsed(adapter: TypeAdapter[Any], body: RawBody) -> Any:
    if len(body.raw) > MAX_HOOK_BODY:
        raise ApiError(413, [Issue("too-long", "the body is over 256 KiB", "body")])
    check_json(body.data)
    try:
        return adapter.validate_python(body.data)
    except ValidationError as exc:
        raise ApiError(400, validation_issues(exc)) from exc


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), 200, media_type="application/json")


@router.get(
    "/cds-services",
    summary="CDS Hooks discovery",
    responses={200: json_ok("careloop's CDS services")},
)
def cds_discovery(caller: CallerDep) -> Response:
    """The services careloop offers to a trusted EHR."""
    del caller
    return _json(discovery())


@router.post(
    f"/cds-services/{SERVICE_ID}",
    summary="CDS Hooks patient-view: careloop's cards for the patient in view",
    responses={200: json_ok("Cards (none when careloop does not know the patient)")},
    openapi_extra=json_body(CdsHookRequest, media_types=("application/json",)),
)
def patient_view(
    caller: CallerDep, body: BodyDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Cards for the open alerts, else the latest scores, of the EHR's patient."""
    hook: CdsHookRequest = _parsed(_HOOK, body)
    defaults = tenant_defaults(settings.consent_defaults, caller.tenant_id)
    return _json(patient_cards(session, caller, hook, settings.base_url, defaults))


@router.post(
    f"/cds-services/{SERVICE_ID}/feedback",
    summary="CDS Hooks feedback: cards accepted or overridden",
    responses={200: json_ok("How many outcomes were recorded and ignored")},
    openapi_extra=json_body(CdsFeedbackRequest, media_types=("application/json",)),
)
def patient_view_feedback(caller: CallerDep, body: BodyDep, session: SessionDep) -> Response:
    """Record each outcome in its alert's history (unknown cards are ignored)."""
    request: CdsFeedbackRequest = _parsed(_FEEDBACK, body)
    result = record_feedback(session, caller, request.feedback)
    commit(session)
    return _json(result)
