"""The app API for chatbot and AI risk signals: ``/v1/risk-signals``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Path
from pydantic import TypeAdapter
from starlette.responses import Response

from careloop.services.auth.tokens import Principal
from careloop.services.common.body import RawBody, parse_as, read_json_body
from careloop.services.common.idempotency import ApiResult, result_response, run_unit_of_work
from careloop.services.common.openapi import errors, json_body, json_ok, schema_ref
from careloop.services.deps import SessionDep, SettingsDep, require
from careloop.services.risks.schemas import RiskSignalCreated, RiskSignalIn
from careloop.services.risks.service import ingest_signal, read_signal

router = APIRouter(
    prefix="/v1/risk-signals",
    tags=["risk signals"],
    responses=errors(400, 401, 403, 422),
)
_signal = TypeAdapter(RiskSignalIn)
_CREATED = schema_ref(RiskSignalCreated)
BodyDep = Annotated[RawBody, Depends(read_json_body)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


@router.post(
    "",
    status_code=201,
    summary="Accept one risk signal an app's chatbot or classifier detected",
    openapi_extra=json_body(RiskSignalIn),
    responses={
        201: json_ok("Accepted: the RiskAssessment and Provenance it created", _CREATED),
        200: json_ok("Already accepted (a retry): the first answer", _CREATED),
        **errors(409, 413, 415, 503),
    },
)
def create_signal(
    body: BodyDep,
    principal: Annotated[Principal, Depends(require("RiskAssessment", "c"))],
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Map one signal to a RiskAssessment, store it once and have the care program judge it."""
    data = parse_as(_signal, body.data)

    def work() -> ApiResult:
        outcome = ingest_signal(session, principal, data)
        location = f"{settings.base_url}/v1/risk-signals/{outcome.signal_id}"
        return ApiResult(outcome.status, orjson.dumps(outcome.as_json()), location)

    return result_response(
        run_unit_of_work(session, principal, work, body=body.raw, idempotency_key=idempotency_key)
    )


@router.get(
    "/{signal_id}",
    summary="What one accepted risk signal created",
    responses={200: json_ok("The signal", _CREATED), **errors(404)},
)
def get_signal(
    signal_id: Annotated[str, Path(max_length=64)],
    principal: Annotated[Principal, Depends(require("RiskAssessment", "r"))],
    session: SessionDep,
) -> Response:
    """The signal's id, patient and the FHIR references it created."""
    outcome = read_signal(session, principal, signal_id)
    return Response(orjson.dumps(outcome.as_json()), media_type="application/json")
