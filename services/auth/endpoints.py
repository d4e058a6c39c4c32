"""``POST /oauth/token``: the client_credentials grant (SMART Backend Services)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from careloop.services.audit.service import record_token
from careloop.services.auth.claimed_client import claimed_client_id
from careloop.services.auth.client_auth import (
    MAX_ASSERTION_LENGTH,
    MAX_CLIENT_ID,
    ClientAuthError,
    authenticate_client,
)
from careloop.services.auth.scopes import ScopeError, grant_scopes
from careloop.services.auth.tokens import issue_token
from careloop.services.common.errors import FHIR_JSON
from careloop.services.common.openapi import (
    FORM,
    JSON,
    OUTCOME_REF,
    json_body,
    json_ok,
    outcome,
)
from careloop.services.common.rate_limit import RateLimits, too_many_requests
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.unit_of_work import commit

router = APIRouter(tags=["auth"])
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str) -> Response:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="careloop"'
    return Response(
        orjson.dumps({"error": error, "error_description": description}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


MAX_FORM_FIELDS = 20
FORM_LIMITS = {"grant_type": 100, "scope": 2000, "client_id": 200, "client_secret": 500}
"""Longest value each form field may have (client_assertion: MAX_ASSERTION_LENGTH)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def _form_body(request: Request) -> dict[str, str] | None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        return None
    pairs = parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True)
    return dict(pairs[: MAX_FORM_FIELDS + 1])


def _throttle(request: Request, form: dict[str, str] | None, authorization: str | None) -> None:
    """429 when this address, or the client the request names, asked for tokens too often."""
    limits: RateLimits = request.app.state.rate_limits
    address = request.client.host if request.client else "unknown"
    wait = limits.limiter.hit(limits.token_per_ip, address)
    if wait is not None:
        raise too_many_requests(wait, "token requests from this address")
    claimed = claimed_client_id(form, authorization) if form is not None else None
    # An id no client can have (too long, control characters) is not worth a counter.
    if claimed and len(claimed) <= MAX_CLIENT_ID and not _CONTROL.search(claimed):
        wait = limits.limiter.hit(limits.token_per_client, claimed)
        if wait is not None:
            raise too_many_requests(wait, "token requests for this client")


def _form_problem(form: dict[str, str]) -> str | None:
    """What is wrong with the form's shape (a description naming the field), or None."""
    if len(form) > MAX_FORM_FIELDS:
        return f"at most {MAX_FORM_FIELDS} form fields"
    for name, value in form.items():
        if _CONTROL.search(name) or _CONTROL.search(value):
            shown = name.encode("unicode_escape").decode("ascii")[:64]
            return f"{shown}: must not contain control characters"
        limit = MAX_ASSERTION_LENGTH if name == "client_assertion" else FORM_LIMITS.get(name, 2000)
        if len(value) > limit:
            return f"{name[:64]}: at most {limit} characters"
    return None


_OAUTH_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
_TOKEN_FORM = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "scope": {"type": "string", "maxLength": FORM_LIMITS["scope"]},
        "client_id": {"type": "string", "maxLength": FORM_LIMITS["client_id"]},
        "client_secret": {"type": "string", "maxLength": FORM_LIMITS["client_secret"]},
        "client_assertion_type": {"type": "string"},
        "client_assertion": {"type": "string", "maxLength": MAX_ASSERTION_LENGTH},
    },
}


def _oauth(description: str, guard: bool = False) -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": _OAUTH_ERROR}}
    if guard:  # the path/query guard and the body limit answer with an OperationOutcome
        content[FHIR_JSON] = {"schema": OUTCOME_REF}
    return {"description": description, "content": content}


@router.post(
    "/oauth/token",
    summary="The client_credentials grant (SMART Backend Services)",
    openapi_extra=json_body(_TOKEN_FORM, media_types=(FORM,)),
    responses={
        200: json_ok("An access token (RFC 6749 5.1)"),
        400: _oauth("invalid_request, unsupported_grant_type or invalid_scope", guard=True),
        401: _oauth("invalid_client"),
        413: outcome(413),
        422: outcome(422),
        429: outcome(429),
    },
)
def token(
    request: Request,
    form: Annotated[dict[str, str] | None, Depends(_form_body)],
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """Issue an access token to an authenticated client for the scopes it may have."""
    _throttle(request, form, authorization)
    if form is None:
        return _oauth_error(400, "invalid_request", "use application/x-www-form-urlencoded")
    problem = _form_problem(form)
    if problem is not None:
        return _oauth_error(400, "invalid_request", problem)
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    token_url = settings.base_url.rstrip("/") + "/oauth/token"
    try:
        client = authenticate_client(session, form, authorization, token_url, settings)
    except ClientAuthError as exc:
        record_token(session, None, claimed_client_id(form, authorization), granted=False)
        commit(session)
        return _oauth_error(401, "invalid_client", str(exc))
    try:
        scope = grant_scopes(form.get("scope"), client.scopes)
    except ScopeError as exc:
        record_token(session, client.tenant_id, client.client_id, granted=False)
        commit(session)
        return _oauth_error(400, "invalid_scope", str(exc))
    record_token(session, client.tenant_id, client.client_id, granted=True)
    commit(session)
    access_token = issue_token(
        settings.secret_key,
        settings.base_url,
        client.client_id,
        client.tenant_id,
        scope,
        settings.token_lifetime_seconds,
    )
    body = {
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": settings.token_lifetime_seconds,
        "scope": scope,
    }
    return Response(orjson.dumps(body), media_type="application/json", headers=_NO_STORE)
