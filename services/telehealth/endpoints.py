"""The app API for telehealth sessions: ``/v1/telehealth-sessions``."""

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
from careloop.services.telehealth.schemas import SessionIn, SessionPatch
from careloop.services.telehealth.service import (
    create_session,
    get_session_row,
    session_json,
    update_session,
)

router = APIRouter(
    prefix="/v1/telehealth-sessions",
    tags=["telehealth sessions"],
    responses=errors(400, 401, 403, 422),
)
_SESSION = json_ok("The session and its Encounter reference")
_session_in = TypeAdapter(SessionIn)
_session_patch = TypeAdapter(SessionPatch)
BodyDep = Annotated[RawBody, Depends(read_json_body)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]
SessionId = Annotated[str, Path(max_length=64)]


@router.post(
    "",
    status_code=201,
    summary="Record a telehealth session",
    openapi_extra=json_body(SessionIn),
    responses={
        201: _SESSION,
        200: json_ok("A session with this app_session_id exists: it, unchanged"),
        **errors(413, 415, 503),
    },
)
def create(
    body: BodyDep,
    principal: Annotated[Principal, Depends(require("Encounter", "c"))],
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create the session and its Encounter (version 1)."""
    data = parse_as(_session_in, body.data)

    def work() -> ApiResult:
        row, created = create_session(session, principal, data)
        location = f"{settings.base_url}/v1/telehealth-sessions/{row.id}"
        return ApiResult(201 if created else 200, orjson.dumps(session_json(row)), location)

    return result_response(
        run_unit_of_work(session, principal, work, body=body.raw, idempotency_key=idempotency_key)
    )


@router.patch(
    "/{session_id}",
    summary="Update a telehealth session",
    openapi_extra=json_body(SessionPatch),
    responses={200: _SESSION, **errors(404, 409, 413, 415, 503)},
)
def patch(
    session_id: SessionId,
    body: BodyDep,
    principal: Annotated[Principal, Depends(require("Encounter", "u"))],
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Change status, times or people; the Encounter keeps its id and gains a version."""
    data = parse_as(_session_patch, body.data)

    def work() -> ApiResult:
        row = update_session(session, principal, session_id, data)
        return ApiResult(200, orjson.dumps(session_json(row)))

    return result_response(
        run_unit_of_work(
            session,
            principal,
            work,
            body=session_id.encode() + body.raw,
            idempotency_key=idempotency_key,
        )
    )


@router.get(
    "/{session_id}", summary="A telehealth session", responses={200: _SESSION, **errors(404)}
)
def get(
    session_id: SessionId,
    principal: Annotated[Principal, Depends(require("Encounter", "r"))],
    session: SessionDep,
) -> Response:
    """The session's current state and its Encounter reference."""
    row = get_session_row(session, principal, session_id)
    return Response(orjson.dumps(session_json(row)), media_type="application/json")
