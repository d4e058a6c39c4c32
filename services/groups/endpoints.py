"""The app API for group sessions: ``/v1/group-sessions``."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Path
from pydantic import TypeAdapter
from starlette.responses import Response

from careloop.services.auth.tokens import Principal
from careloop.services.common.body import RawBody, parse_as, read_json_body
from careloop.services.common.idempotency import ApiResult, result_response, run_unit_of_work
from careloop.services.common.openapi import errors, json_body, json_ok
from careloop.services.deps import SessionDep, SettingsDep, require
from careloop.services.groups.schemas import GroupSessionIn
from careloop.services.groups.service import read_session, record_session

router = APIRouter(
    prefix="/v1/group-sessions",
    tags=["group sessions"],
    responses=errors(400, 401, 403, 422),
)
_session_in = TypeAdapter(GroupSessionIn)
_SESSION = json_ok("The session's Group, its Encounter and each participant's Encounter")
BodyDep = Annotated[RawBody, Depends(read_json_body)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]


@router.post(
    "",
    status_code=201,
    summary="Record a group session (virtual support group or group telehealth)",
    openapi_extra=json_body(GroupSessionIn),
    responses={
        201: _SESSION,
        200: json_ok("Already recorded under this app_session_id (a retry): the first answer"),
        **errors(409, 413, 415, 503),
    },
)
def create(
    body: BodyDep,
    principal: Annotated[Principal, Depends(require("Encounter", "c"))],
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Store the Group, the group's Encounter and one Encounter per participant, once."""
    data = parse_as(_session_in, body.data)

    def work() -> ApiResult:
        outcome = record_session(session, principal, data)
        location = f"{settings.base_url}/v1/group-sessions/{outcome.session_id}"
        return ApiResult(outcome.status, orjson.dumps(outcome.as_json()), location)

    return result_response(
        run_unit_of_work(session, principal, work, body=body.raw, idempotency_key=idempotency_key)
    )


@router.get(
    "/{session_id}", summary="A recorded group session", responses={200: _SESSION, **errors(404)}
)
def get(
    session_id: Annotated[str, Path(max_length=64)],
    principal: Annotated[Principal, Depends(require("Encounter", "r"))],
    session: SessionDep,
) -> Response:
    """The session's Group, Encounter and each participant's Encounter and attendance."""
    outcome = read_session(session, principal, session_id)
    return Response(orjson.dumps(outcome.as_json()), media_type="application/json")
