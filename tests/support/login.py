"""Clinicians who sign in with a password, and a browser posting the sign-in form."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from careloop.services.clinicians.service import add_clinician
from careloop.services.tenancy.service import get_or_create_tenant
from careloop.services.unit_of_work import session_scope

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Account:
    """A clinician who signs in with ``email`` and ``PASSWORD``."""

    tenant_id: str
    clinician_id: str
    email: str


def new_tenant(engine: Engine) -> str:
    """A fresh tenant's id."""
    with session_scope(engine) as session:
        return get_or_create_tenant(session, f"clinic-{uuid.uuid4().hex[:8]}").id


def new_account(engine: Engine, tenant_id: str | None = None) -> Account:
    """A clinician of ``tenant_id`` (or of a new tenant) with the password ``PASSWORD``."""
    tenant = tenant_id or new_tenant(engine)
    email = f"Dr.{uuid.uuid4().hex[:8]}@Example.org"
    with session_scope(engine) as session:
        clinician = add_clinician(
            session, tenant, email, "Dr Synthetic Test", PASSWORD, "Practitioner/dr-1"
        )
        return Account(tenant, clinician.id, email.lower())


def login_token(browser: TestClient, next_path: str = "") -> str:
    """Open the sign-in form and return its CSRF token."""
    page = browser.get("/login" + (f"?next={next_path}" if next_path else ""))
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def sign_in(
    browser: TestClient, email: str, password: str = PASSWORD, next_path: str = ""
) -> httpx.Response:
    """Post the sign-in form as a browser would (after opening it)."""
    form = {"email": email, "password": password, "csrf_token": login_token(browser)}
    if next_path:
        form["next"] = next_path
    return browser.post("/login", data=form, follow_redirects=False)
