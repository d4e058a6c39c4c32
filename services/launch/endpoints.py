"""``/launch`` (EHR launch), ``/launch/standalone``, ``/launch/callback`` and the landing page."""

from __future__ import annotations

import html
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Query, Request
from sqlmodel import select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from careloop.services.alerts.models import Alert
from careloop.services.alerts.vocabulary import AlertStatus
from careloop.services.common.openapi import HTML, errors, outcome
from careloop.services.db import utcnow
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.launch.models import ClinicianSession
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
COOKIE = "careloop_session"
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
        return _error(exc)
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


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _error(exc: LaunchError, status: int = 400) -> HTMLResponse:
    return _page("careloop could not open", f"<p>{html.escape(str(exc))}</p>", status)


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
    """Check state, exchange the code, open a session and land on the patient's page."""
    if error or not code or not state:
        return _error(LaunchError("the EHR did not authorize the launch"))
    browser = request.cookies.get(launch_cookie_name(settings))
    try:
        clinician = complete(session, settings, code, state, browser)
    except BrowserMismatch as exc:
        session.rollback()  # the state stays for the browser that started the launch
        return _error(exc, 403)
    except LaunchError as exc:
        commit(session)  # the used state stays consumed
        return _error(exc)
    commit(session)
    target = f"/app/patients/{clinician.patient_id}" if clinician.patient_id else "/app/unlinked"
    response = RedirectResponse(target, status_code=302)
    response.set_cookie(
        COOKIE,
        clinician.id,
        httponly=True,
        samesite="lax",
        secure=settings.base_url.startswith("https://"),
        max_age=8 * 3600,
    )
    return response


def _clinician(session: SessionDep, cookie: str | None) -> ClinicianSession | None:
    if not cookie:
        return None
    clinician = session.get(ClinicianSession, cookie)
    if clinician is None or clinician.expires_at < utcnow():
        return None
    return clinician


@router.get(
    "/app/patients/{patient_id}",
    summary="The launched patient's page",
    response_class=HTMLResponse,
    responses={401: {"description": "No clinician session", "content": _PAGE}, **_REFUSED},
)
def patient_page(
    patient_id: str,
    session: SessionDep,
    careloop_session: Annotated[str | None, Cookie()] = None,
) -> Response:
    """The patient's open alerts (the clinician view grows from here)."""
    clinician = _clinician(session, careloop_session)
    if clinician is None or clinician.patient_id != patient_id:
        return _page("Not signed in", "<p>Open careloop from the patient's chart.</p>", 401)
    alerts = session.exec(
        select(Alert).where(
            Alert.tenant_id == clinician.tenant_id,
            Alert.patient_id == patient_id,
            Alert.status != AlertStatus.RESOLVED,
        )
    ).all()
    items = "".join(
        f"<li data-alert='{html.escape(a.id)}'>{html.escape(a.severity)}: "
        f"{html.escape(a.rule_id)} ({html.escape(a.status)})</li>"
        for a in alerts
    )
    context = f"<p data-patient='{html.escape(patient_id)}'>Patient/{html.escape(patient_id)}"
    if clinician.encounter_id:
        context += f" · Encounter/{html.escape(clinician.encounter_id)} in the EHR"
    if clinician.fhir_user:
        context += f" · signed in as {html.escape(clinician.fhir_user)}"
    return _page("careloop", f"{context}</p><h2>Open alerts</h2><ul>{items}</ul>")


@router.get(
    "/app/unlinked",
    summary="The launched patient is not linked to careloop",
    response_class=HTMLResponse,
    responses={401: {"description": "No clinician session", "content": _PAGE}, **_REFUSED},
)
def unlinked(
    session: SessionDep, careloop_session: Annotated[str | None, Cookie()] = None
) -> Response:
    """Explain that the EHR patient has no careloop data yet."""
    clinician = _clinician(session, careloop_session)
    if clinician is None:
        return _page("Not signed in", "<p>Open careloop from the patient's chart.</p>", 401)
    return _page("No careloop data", "<p>This patient is not linked to careloop yet.</p>")
