"""Clinician accounts: added by an administrator, signed in by email and password.

A run of failed sign-ins locks the account for a while (``MAX_FAILURES``, ``LOCKOUT``); while
locked, even the right password is refused, and the answer is the same as for a wrong password
or an unknown email, so it tells an attacker nothing about which emails exist.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from careloop.services.audit.service import record_sign_in
from careloop.services.clinicians.models import Clinician
from careloop.services.clinicians.passwords import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    hash_password,
    verify_password,
)
from careloop.services.db import utcnow
from careloop.services.tenancy.models import Tenant

MAX_FAILURES = 5
"""Consecutive failed sign-ins that lock an account."""
LOCKOUT = timedelta(minutes=15)
MAX_EMAIL = 320
MAX_NAME = 200
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]{1,255}$")
_PRACTITIONER = re.compile(r"^Practitioner/[A-Za-z0-9\-.]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ClinicianError(ValueError):
    """A clinician that cannot be added; the message names the problem (never the password)."""


def normal_email(email: str) -> str | None:
    """``email`` trimmed and lower-cased, or None when it cannot be an email address."""
    value = email.strip().lower()
    if len(value) > MAX_EMAIL or not _EMAIL.match(value):
        return None
    return value


def add_clinician(
    session: Session,
    tenant_id: str,
    email: str,
    name: str,
    password: str | None,
    practitioner: str | None = None,
) -> Clinician:
    """A new clinician of ``tenant_id`` (added to ``session``, uncommitted).

    The email is stored lower-case and is unique across careloop; ``practitioner`` is
    ``Practitioner/{id}``; a password, when given, has ``MIN_PASSWORD`` to ``MAX_PASSWORD``
    characters and is stored only as its argon2id hash.
    """
    if session.get(Tenant, tenant_id) is None:
        raise ClinicianError(f"no tenant {tenant_id}")
    address = normal_email(email)
    if address is None:
        raise ClinicianError("email: not an email address")
    name = name.strip()
    if not name or len(name) > MAX_NAME or _CONTROL.search(name):
        raise ClinicianError(f"name: 1 to {MAX_NAME} printable characters")
    if practitioner is not None and not _PRACTITIONER.match(practitioner):
        raise ClinicianError("practitioner: must be Practitioner/{FHIR id}")
    if password is not None and not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ClinicianError(f"password: {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    if session.exec(select(Clinician).where(Clinician.email == address)).first() is not None:
        raise ClinicianError("email: a clinician with this email exists")
    clinician = Clinician(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        email=address,
        name=name,
        practitioner=practitioner,
        password_hash=hash_password(password) if password is not None else None,
    )
    session.add(clinician)
    session.flush()
    return clinician


def list_clinicians(session: Session, tenant_id: str | None = None) -> list[Clinician]:
    """Clinicians (of ``tenant_id``, or all), oldest first."""
    query = select(Clinician).order_by(col(Clinician.created_at), col(Clinician.id))
    if tenant_id is not None:
        query = query.where(Clinician.tenant_id == tenant_id)
    return list(session.exec(query).all())


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the clinician, or None (wrong, unknown, locked or inactive)."""

    clinician: Clinician | None
    locked: bool = False
    """Whether the account is (now) locked; not to be shown: it would confirm the email."""


def authenticate(
    session: Session, email: str, password: str, now: datetime | None = None
) -> SignIn:
    """Check ``email`` and ``password``, counting failures and locking after ``MAX_FAILURES``.

    Always verifies one argon2 hash (a dummy for unknown or locked accounts), so every outcome
    takes about as long. Changes to the account are added to ``session`` (the caller commits).
    """
    now = now or utcnow()
    address = normal_email(email)
    clinician = None
    if address is not None and len(password) <= MAX_PASSWORD:
        clinician = session.exec(
            select(Clinician).where(Clinician.email == address).with_for_update()
        ).first()
    locked = _locked(clinician, now)
    usable = clinician is not None and clinician.active and not locked
    stored = clinician.password_hash if clinician is not None and usable else None
    matched = verify_password(password[:MAX_PASSWORD], stored)
    record_sign_in(session, clinician, matched and usable)
    if clinician is None or locked:
        return SignIn(None, locked=locked)
    if matched:
        clinician.failed_logins = 0
        clinician.locked_until = None
        clinician.last_login_at = now
        session.add(clinician)
        return SignIn(clinician)
    clinician.failed_logins += 1
    if clinician.failed_logins >= MAX_FAILURES:
        clinician.failed_logins = 0
        clinician.locked_until = now + LOCKOUT
    session.add(clinician)
    return SignIn(None, locked=_locked(clinician, now))


def _locked(clinician: Clinician | None, now: datetime) -> bool:
    return bool(clinician and clinician.locked_until and clinician.locked_until > now)
