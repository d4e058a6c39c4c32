"""``/launch`` (EHR launch), ``/launch/standalone``, ``/launch/callback``; who signs in."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from careloop.services.clinicians.sessions import SignedInDep, set_session_cookie
from careloop.services.common.openapi import HTML, errors, outcome
from careloop.services.dashboard.templating import render
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.launch.models import LaunchState
from careloop.services.launch.service import (
    STATE_TTL,
    BrowserMismatch,
    LaunchError,
    begin,
    browser_key,
    complete,
)
from careloop.services.settings import Settings
from careloop.services.unit_of_work import commit

_PAGE: dict[str, Any] = {HTML: {"schema": {"type": "string"}}}
_REDIRECT: dict[int | str, dict[str, Any]] = {
    302: {"description": "To the EHR's authorize endpoint (or the landing page)"}
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The launch cannot go on (a page), or a control character in the query",
        "content": {**_PAGE, **outcome(400)["content"]},
    },
    **errors(422),
}
router = APIRouter(tags=["SMART App Launch"], include_in_schema=True)
LAUNCH_COOKIE = "careloop_launch"


def _https(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def launch_cookie_name(settings: Settings) -> str:
    """The launch cookie's name; over https ``__Host-`` keeps other subdomains from setting it."""
    return f"__Host-{LAUNCH_COOKIE}" if _https(settings) else LAUNCH_COOKIE


def _start(
    request: Request, session: SessionDep, settings: Settings, iss: str, launch: str | None
) -> Response:
    """Redirect to the EHR's authorize endpoint, binding the state to this browser's cookie."""
    name = launch_cookie_name(settings)
    browser = browser_key(request.cookies.get(name))
    try:
        target = begin(session, settings, iss, launch, browser)
    except LaunchError as exc:
        return _error(request, exc)
    commit(session)
    response = RedirectResponse(target.url, status_code=302)
    response.set_cookie(
        name,
        browser,
        max_age=int(STATE_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_https(settings),
    )
    return response


def _error(request: Request, exc: LaunchError, status: int = 400) -> HTMLResponse:
    return render(
        request,
        "message.html",
        None,
        status=status,
        title="careloop could not open",
        message=str(exc),
    )


@router.get(
    "/launch",
    status_code=302,
    response_class=RedirectResponse,
    summary="EHR launch: the EHR opens careloop with iss and launch",
    responses={**_REDIRECT, **_REFUSED},
)
def ehr_launch(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    iss: Annotated[str, Query(max_length=500)],
    launch: Annotated[str, Query(max_length=500)],
) -> Response:
    """Redirect to the EHR's authorize endpoint (PKCE S256, state, the launch echoed)."""
    return _start(request, session, settings, iss, launch)


@router.get(
    "/launch/standalone",
    status_code=302,
    response_class=RedirectResponse,
    summary="Standalone launch: careloop opened outside the EHR",
    responses={**_REDIRECT, **_REFUSED},
)
def standalone_launch(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    iss: Annotated[str, Query(max_length=500)],
) -> Response:
    """Launch outside the EHR (``iss``: its FHIR base); the EHR asks for the patient."""
    return _start(request, session, settings, iss, None)


@router.get(
    "/launch/callback",
    status_code=302,
    response_class=RedirectResponse,
    summary="The EHR returns here with code and state",
    responses={**_REDIRECT, **_REFUSED},
)
def callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Check state, exchange the code, validate the id_token, sign in, land on the patient.

    A launch from a CDS card whose ``appContext`` names an alert of the patient lands on
    that alert's page instead.
    """
    if error or not code or not state:
        return _error(request, LaunchError("the EHR did not authorize the launch"))
    browser = request.cookies.get(launch_cookie_name(settings))
    try:
        launched = complete(session, settings, code, state, browser)
    except BrowserMismatch as exc:
        session.rollback()  # the state stays for the browser that started the launch
        return _error(request, exc, 403)
    except LaunchError as exc:
        session.rollback()
        _consume(session, state)  # the used state stays consumed
        return _error(request, exc)
    commit(session)
    signed = launched.session
    if launched.alert_id:
        target = f"/alerts/{quote(launched.alert_id, safe='')}"
    elif signed.patient_id:
        target = f"/patients/{quote(signed.patient_id, safe='')}"
    else:
        target = "/app/unlinked"
    response = RedirectResponse(target, status_code=302)
    set_session_cookie(response, settings, signed.id, embedded=True)
    return response


def _consume(session: SessionDep, state: str) -> None:
    pending = session.get(LaunchState, state)
    if pending is not None:
        session.delete(pending)
    commit(session)


@router.get(
    "/app/patients/{patient_id}",
    status_code=303,
    response_class=RedirectResponse,
    summary="Moved: the patient's page is /patients/{patient_id}",
    responses={303: {"description": "To /patients/{patient_id}"}, **_REFUSED},
)
def patient_page(patient_id: Annotated[str, Path(max_length=64)]) -> Response:
    """The launched patient's page moved to ``/patients/{patient_id}``."""
    return RedirectResponse(f"/patients/{quote(patient_id, safe='')}", status_code=303)


@router.get(
    "/app/unlinked",
    summary="The launched patient is not linked to careloop",
    response_class=HTMLResponse,
    responses={303: {"description": "Not signed in: to /login"}, **_REFUSED},
)
def unlinked(request: Request, signed: SignedInDep) -> Response:
    """Explain that the EHR patient has no careloop data yet."""
    return render(
        request,
        "message.html",
        signed,
        title="No careloop data",
        message="This patient is not linked to careloop yet.",
        active="",
    )
