"""Signed-in browsers: one ``ClinicianSession`` row per sign-in, named by an HttpOnly cookie.

Password sign-in and SMART App Launch both end in ``open_session``; pages take the clinician
from ``SignedInDep`` (which sends a browser without a session to ``/login``) and check every
form's CSRF token with ``csrf_ok``.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlmodel import Session
from starlette.responses import Response

from careloop.services.clinicians.models import Clinician
from careloop.services.db import utcnow
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.launch.models import ClinicianSession
from careloop.services.settings import Settings

SESSION_TTL = timedelta(hours=8)
COOKIE = "careloop_session"


@dataclass(frozen=True)
class SignedIn:
    """Who is signed in on this browser, and in which tenant."""

    session_id: str
    tenant_id: str
    clinician_id: str | None
    name: str
    practitioner: str | None
    """``Practitioner/{id}``, when the clinician is linked to one."""
    csrf_token: str
    patient_id: str | None = None
    """The patient in context, when signed in by an EHR launch."""
    connection_id: str | None = None

    @property
    def actor(self) -> str:
        """What is recorded as who acted: the Practitioner, else the clinician account."""
        return self.practitioner or f"clinician:{self.clinician_id or self.session_id[:8]}"


class NotSignedIn(Exception):
    """The page needs a signed-in clinician; the browser goes to ``/login?next=...``."""

    def __init__(self, next_path: str) -> None:
        super().__init__("not signed in")
        self.next_path = next_path


def _https(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def cookie_name(settings: Settings) -> str:
    """The session cookie's name; over https ``__Host-`` keeps other subdomains from setting it."""
    return f"__Host-{COOKIE}" if _https(settings) else COOKIE


def open_session(
    session: Session,
    tenant_id: str,
    clinician: Clinician | None,
    *,
    connection_id: str | None = None,
    fhir_user: str | None = None,
    ehr_patient_id: str | None = None,
    patient_id: str | None = None,
    encounter_id: str | None = None,
    scope: str = "",
) -> ClinicianSession:
    """A new session (a fresh random id and CSRF token), added to ``session``, uncommitted."""
    row = ClinicianSession(
        id=secrets.token_urlsafe(32),
        tenant_id=tenant_id,
        clinician_id=clinician.id if clinician else None,
        csrf_token=secrets.token_urlsafe(32),
        connection_id=connection_id,
        fhir_user=fhir_user,
        ehr_patient_id=ehr_patient_id,
        patient_id=patient_id,
        encounter_id=encounter_id,
        scope=scope,
        expires_at=utcnow() + SESSION_TTL,
    )
    session.add(row)
    return row


def set_session_cookie(
    response: Response, settings: Settings, session_id: str, *, embedded: bool = False
) -> None:
    """Hand the browser its session cookie (HttpOnly, SameSite=Lax, Secure over https).

    ``embedded``: the session of an EHR launch, whose pages run in the EHR's iframe (another
    site). Over https its cookie is ``SameSite=None; Secure; Partitioned`` (CHIPS: kept in a jar
    of the EHR's site only, so it cannot be used to track across sites), else browsers would not
    send it from the frame. Starlette only writes ``Partitioned`` on Python 3.14+, so the header is
    written here.
    """
    max_age = int(SESSION_TTL.total_seconds())
    if embedded and _https(settings):
        response.headers.append(
            "set-cookie",
            f"{cookie_name(settings)}={session_id}; HttpOnly; Max-Age={max_age}; Path=/; "
            "SameSite=None; Secure; Partitioned",
        )
        return
    response.set_cookie(
        cookie_name(settings),
        session_id,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_https(settings),
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Tell the browser to forget its session cookie (over https the partitioned one too)."""
    response.delete_cookie(
        cookie_name(settings), path="/", httponly=True, samesite="lax", secure=_https(settings)
    )
    if _https(settings):
        response.headers.append(
            "set-cookie",
            f"{cookie_name(settings)}=; HttpOnly; Max-Age=0; Path=/; "
            "SameSite=None; Secure; Partitioned",
        )


def close_session(session: Session, session_id: str) -> None:
    """End the session ``session_id`` (deleted, uncommitted): its cookie names nothing now."""
    row = session.get(ClinicianSession, session_id)
    if row is not None:
        session.delete(row)


def signed_in(request: Request, session: Session, settings: Settings) -> SignedIn | None:
    """The clinician this request's cookie names, or None (no cookie, unknown, expired)."""
    cookie = request.cookies.get(cookie_name(settings))
    if not cookie or len(cookie) > 100:
        return None
    row = session.get(ClinicianSession, cookie)
    if row is None or row.expires_at < utcnow():
        return None
    clinician = session.get(Clinician, row.clinician_id) if row.clinician_id else None
    if row.clinician_id and (clinician is None or not clinician.active):
        return None
    return SignedIn(
        session_id=row.id,
        tenant_id=row.tenant_id,
        clinician_id=row.clinician_id,
        name=clinician.name if clinician else (row.fhir_user or "EHR user"),
        practitioner=clinician.practitioner if clinician else None,
        csrf_token=row.csrf_token,
        patient_id=row.patient_id,
        connection_id=row.connection_id,
    )


def require_signed_in(request: Request, session: SessionDep, settings: SettingsDep) -> SignedIn:
    """The signed-in clinician; without one, ``NotSignedIn`` (a redirect to the sign-in page)."""
    found = signed_in(request, session, settings)
    if found is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise NotSignedIn(target)
    return found


SignedInDep = Annotated[SignedIn, Depends(require_signed_in)]


def login_url(next_path: str) -> str:
    """``/login`` returning to ``next_path`` (a local path only) after sign-in."""
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def safe_next(next_path: str | None) -> str:
    """``next_path`` when it is a path on careloop itself, else the inbox (no open redirect)."""
    if not next_path or not next_path.startswith("/") or next_path.startswith(("//", "/\\")):
        return "/inbox"
    if len(next_path) > 2000 or any(c in next_path for c in "\r\n\t\\"):
        return "/inbox"
    return next_path


def csrf_ok(signed: SignedIn, token: str | None) -> bool:
    """Whether a form's ``csrf_token`` is this session's (constant time)."""
    return bool(token) and hmac.compare_digest(str(token), signed.csrf_token)
