"""Typed FastAPI dependencies: settings, database session, the calling principal, scopes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session

from careloop.services.auth.tokens import InvalidToken, Principal, verify_token
from careloop.services.common.errors import ApiError, Issue
from careloop.services.common.rate_limit import RateLimits, too_many_requests
from careloop.services.settings import Settings
from careloop.services.unit_of_work import hand_off_to


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_app_engine(request: Request) -> Engine:
    """The app's database engine."""
    engine: Engine = request.app.state.engine
    return engine


async def get_session(
    request: Request, engine: Annotated[Engine, Depends(get_app_engine)]
) -> AsyncIterator[Session]:
    """A session for one request; its unit of work commits with ``unit_of_work.commit``.

    Opening a session touches no connection, so it happens on the event loop; closing one that
    still holds a connection (a read, or a failed write) talks to the database, so that runs in
    a worker thread. A committed unit of work has already given its connection back.
    """
    session = Session(engine, expire_on_commit=False)
    state = request.app.state
    hand_off_to(
        session,
        getattr(state, "outbox_handoff", None),
        getattr(state, "reading_triage", None),
    )
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EngineDep = Annotated[Engine, Depends(get_app_engine)]
SessionDep = Annotated[Session, Depends(get_session)]

_BEARER = {"WWW-Authenticate": 'Bearer realm="careloop"'}
MAX_TOKEN_LENGTH = 4096
"""careloop's own access tokens are well under 1 KB."""


_bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearer", bearerFormat="JWT")
"""Declares the bearer scheme in the OpenAPI; the header is checked below, answering 401."""


async def get_principal(
    request: Request,
    settings: SettingsDep,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
) -> Principal:
    """The client behind the request's bearer token (401 without a valid one)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, [Issue("login", "a bearer access token is required")], _BEARER)
    if len(token) > MAX_TOKEN_LENGTH:
        raise ApiError(401, [Issue("login", "the access token is not valid")], _BEARER)
    try:
        principal = verify_token(settings.secret_key, settings.base_url, token.strip())
    except InvalidToken as exc:
        raise ApiError(401, [Issue("login", str(exc))], _BEARER) from exc
    request.state.client_id = principal.client_id
    limits: RateLimits | None = getattr(request.app.state, "rate_limits", None)
    if limits is not None and limits.api_per_client.items:
        hit = limits.limiter.hit
        if limits.limiter.in_process:
            wait = hit(limits.api_per_client, principal.client_id)
        else:  # a round trip to Redis: not on the event loop
            wait = await run_in_threadpool(hit, limits.api_per_client, principal.client_id)
        if wait is not None:
            raise too_many_requests(wait, "requests from this client")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def check_scope(principal: Principal, resource_type: str, permission: str) -> None:
    """Raise 403 unless the principal's scopes allow ``permission`` on ``resource_type``."""
    if not principal.grant.allows(resource_type, permission):
        raise ApiError(
            403,
            [
                Issue(
                    "forbidden",
                    f"the token's scopes do not allow '{permission}' on {resource_type}",
                )
            ],
        )


async def get_admin(principal: PrincipalDep) -> Principal:
    """The principal, if its token carries ``careloop/admin`` (403 otherwise)."""
    if not principal.grant.is_admin:
        raise ApiError(403, [Issue("forbidden", "this needs the careloop/admin scope")])
    return principal


AdminDep = Annotated[Principal, Depends(get_admin)]


def require(
    resource_type: str, *permissions: str
) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency granting access only with all ``permissions`` on ``resource_type``.

    Like the other cheap dependencies it is ``async``: it runs on the event loop instead of
    costing a hand-off to a worker thread per request.
    """

    async def dependency(principal: PrincipalDep) -> Principal:
        for permission in permissions:
            check_scope(principal, resource_type, permission)
        return principal

    return dependency
