"""``POST /oauth/token``: the client_credentials grant (SMART Backend Services)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from careloop.services.auth.claimed_client import claimed_client_id
from careloop.services.auth.client_auth import ClientAuthError, authenticate_client
from careloop.services.auth.scopes import ScopeError, grant_scopes
from careloop.services.auth.tokens import issue_token
from careloop.services.common.rate_limit import RateLimits, too_many_requests
from careloop.services.deps import SessionDep, SettingsDep

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


async def _form_body(request: Request) -> dict[str, str] | None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        return None
    return dict(parse_qsl((await request.body()).decode(errors="replace")))


def _throttle(request: Request, form: dict[str, str] | None, authorization: str | None) -> None:
    """429 when this address, or the client the request names, asked for tokens too often."""
    limits: RateLimits = request.app.state.rate_limits
    address = request.client.host if request.client else "unknown"
    wait = limits.limiter.hit(limits.token_per_ip, address)
    if wait is not None:
        raise too_many_requests(wait, "token requests from this address")
    claimed = claimed_client_id(form, authorization) if form is not None else None
    if claimed:
        wait = limits.limiter.hit(limits.token_per_client, claimed)
        if wait is not None:
            raise too_many_requests(wait, "token requests for this client")


@router.post("/oauth/token")
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
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    token_url = settings.base_url.rstrip("/") + "/oauth/token"
    try:
        client = authenticate_client(session, form, authorization, token_url, settings)
    except ClientAuthError as exc:
        session.commit()
        return _oauth_error(401, "invalid_client", str(exc))
    try:
        scope = grant_scopes(form.get("scope"), client.scopes)
    except ScopeError as exc:
        return _oauth_error(400, "invalid_scope", str(exc))
    session.commit()
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
