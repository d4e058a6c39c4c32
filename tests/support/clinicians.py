"""Clinician accounts and signed-in browser sessions for the dashboard's tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Engine

from careloop.services.clinicians.models import Clinician
from careloop.services.clinicians.sessions import COOKIE, open_session
from careloop.services.unit_of_work import session_scope


@dataclass(frozen=True)
class SignedInBrowser:
    """A clinician with an open session: send ``cookies`` (http) to be signed in."""

    clinician_id: str
    tenant_id: str
    practitioner: str | None
    session_id: str
    csrf_token: str

    @property
    def cookies(self) -> dict[str, str]:
        """The session cookie as an http (not https) careloop names it."""
        return {COOKIE: self.session_id}


def add_clinician(
    engine: Engine,
    tenant_id: str,
    *,
    name: str = "Dr Synthetic Test",
    practitioner: str | None = None,
    email: str | None = None,
    password_hash: str | None = None,
) -> Clinician:
    """Store a clinician of ``tenant_id`` (synthetic; a random email unless given)."""
    clinician = Clinician(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        email=email or f"clinician-{uuid.uuid4().hex[:10]}@example.org",
        name=name,
        practitioner=practitioner,
        password_hash=password_hash,
    )
    with session_scope(engine) as session:
        session.add(clinician)
    return clinician


def signed_in_browser(
    engine: Engine, tenant_id: str, practitioner: str | None = None, name: str = "Dr Synthetic Test"
) -> SignedInBrowser:
    """A new clinician of ``tenant_id`` with an open session (as after a password sign-in)."""
    clinician = add_clinician(engine, tenant_id, name=name, practitioner=practitioner)
    with session_scope(engine) as session:
        row = open_session(session, tenant_id, clinician)
        session_id, csrf = row.id, row.csrf_token
    return SignedInBrowser(clinician.id, tenant_id, practitioner, session_id, csrf)
