"""``/login`` (email and password) and ``/logout``: the dashboard's front door.

The sign-in form is protected against CSRF before any session exists by a signed double-submit
token: ``GET /login`` hands the browser a random cookie, and the form carries an HMAC of it under
careloop's secret key; ``POST /login`` accepts only the pair. Every sign-in opens a new session
(a fresh id: no session fixation) and ends the one the browser had. Sign-in attempts are limited
per client address (``CARELOOP_RATE_LIMIT_LOGIN_PER_IP``) so emails cannot be sprayed, and per
account by the lockout in ``careloop.services.clinicians.service``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from careloop.services.clinicians.passwords import MAX_PASSWORD
from careloop.services.clinicians.service import MAX_EMAIL, authenticate
from careloop.services.clinicians.sessions import (
    clear_session_cookie,
    close_session,
    csrf_ok,
    open_session,
    safe_next,
    set_session_cookie,
    signed_in,
)
from careloop.services.common.forms import read_form
from careloop.services.common.rate_limit import Limit, RateLimits
from careloop.services.dashboard.templating import render
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.settings import Settings
from careloop.services.unit_of_work import commit

router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "careloop_login"
LOGIN_COOKIE_TTL = 3600
WRONG = "Email or password is wrong."
WRONG_HINT = (
    "After several failed attempts an account is paused for 15 minutes: if you are sure of your "
    "password, try again later."
)
_LOGIN_FIELDS = {"email": MAX_EMAIL, "password": MAX_PASSWORD, "csrf_token": 100, "next": 2000}
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43,100}$")


def _https(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def login_cookie_name(settings: Settings) -> str:
    """The sign-in form's CSRF cookie; ``__Host-`` over https."""
    return f"__Host-{LOGIN_COOKIE}" if _https(settings) else LOGIN_COOKIE


def _form_token(settings: Settings, cookie: str) -> str:
    mac = hmac.new(settings.secret_key.encode(), b"login-csrf:" + cookie.encode(), hashlib.sha256)
    return mac.hexdigest()


def _login_cookie(request: Request, settings: Settings) -> str | None:
    value = request.cookies.get(login_cookie_name(settings))
    return value if value and _TOKEN.match(value) else None


def _login_page(
    request: Request,
    settings: Settings,
    next_path: str,
    *,
    status: int = 200,
    error: str = "",
    flash: str = "",
    email: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    """The sign-in form, with a CSRF token bound to this browser's login cookie."""
    cookie = _login_cookie(request, settings) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status=status,
        error=error,
        flash=flash,
        email=email,
        next=safe_next(next_path),
        csrf_token=_form_token(settings, cookie),
    )
    response.set_cookie(
        login_cookie_name(settings),
        cookie,
        max_age=LOGIN_COOKIE_TTL,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_https(settings),
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


async def _login_form(request: Request) -> dict[str, str] | None:
    return await read_form(request, _LOGIN_FIELDS)


async def _logout_form(request: Request) -> dict[str, str] | None:
    return await read_form(request, {"csrf_token": 100})


@router.get("/login")
def login_form(request: Request, settings: SettingsDep) -> Response:
    """The sign-in form (also to a signed-in browser: signing in again switches the account)."""
    return _login_page(request, settings, request.query_params.get("next", "")[:2000])


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    form: Annotated[dict[str, str] | None, Depends(_login_form)],
) -> Response:
    """Check email and password; on success a new session and a 303 to ``next``."""
    if form is None:
        return _login_page(
            request, settings, "/inbox", status=400, error="The sign-in form could not be read."
        )
    next_path = safe_next(form["next"])
    wait = _throttle(request, settings)
    if wait is not None:
        message = "Too many sign-in attempts from this address: try again later."
        return _login_page(
            request, settings, next_path, status=429, error=message,
            headers={"Retry-After": str(wait)},
        )  # fmt: skip
    cookie = _login_cookie(request, settings)
    token = form["csrf_token"]
    if cookie is None or not hmac.compare_digest(token, _form_token(settings, cookie)):
        return _login_page(
            request,
            settings,
            next_path,
            status=403,
            error="The sign-in form expired: please sign in again.",
        )
    outcome = authenticate(session, form["email"], form["password"])
    if outcome.clinician is None:
        commit(session)  # the failure counts
        return _login_page(
            request,
            settings,
            next_path,
            status=401,
            error=WRONG,
            flash=WRONG_HINT,
            email=form["email"][:MAX_EMAIL],
        )
    previous = signed_in(request, session, settings)
    if previous is not None:
        close_session(session, previous.session_id)
    row = open_session(session, outcome.clinician.tenant_id, outcome.clinician)
    commit(session)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, settings, row.id)
    response.delete_cookie(
        login_cookie_name(settings), path="/", httponly=True, secure=_https(settings)
    )
    return response


def _throttle(request: Request, settings: Settings) -> int | None:
    """Seconds to wait when this address tried to sign in too often, else None."""
    limits: RateLimits = request.app.state.rate_limits
    address = request.client.host if request.client else "unknown"
    return limits.limiter.hit(_login_limit(settings.rate_limit_login_per_ip), address)


@lru_cache(maxsize=4)
def _login_limit(spec: str) -> Limit:
    return Limit.parse("login-ip", spec)


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    form: Annotated[dict[str, str] | None, Depends(_logout_form)],
) -> Response:
    """End this browser's session (the form's ``csrf_token`` must be the session's)."""
    signed = signed_in(request, session, settings)
    if signed is not None:
        if form is None or not csrf_ok(signed, form["csrf_token"]):
            return render(
                request,
                "message.html",
                signed,
                status=403,
                title="Not signed out",
                message="The form expired: reload the page and sign out again.",
                active="",
            )
        close_session(session, signed.session_id)
        commit(session)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, settings)
    return response
