"""Signing in at /login: the contract, CSRF before a session, lockout, fixation, hostile forms."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL
from support.login import PASSWORD, Account, login_token, new_account, sign_in

from careloop.services.clinicians.models import Clinician
from careloop.services.clinicians.service import LOCKOUT, MAX_FAILURES
from careloop.services.clinicians.sessions import COOKIE, signed_in
from careloop.services.db import utcnow
from careloop.services.launch.models import ClinicianSession
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.web import create_app

WRONG = "Email or password is wrong"


def _clinician(engine: Engine, clinician_id: str) -> Clinician:
    with session_scope(engine) as session:
        found = session.get(Clinician, clinician_id)
        assert found is not None
        return found


def test_the_form_follows_the_contract(browser: TestClient) -> None:
    page = browser.get("/login?next=/alerts/a-1")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    for piece in (
        'name="email" id="email"',
        'name="password" id="password" type="password"',
        'type="hidden" name="csrf_token"',
        'name="next" value="/alerts/a-1"',
        "Sign in</button>",
    ):
        assert piece in page.text
    cookie = page.headers["set-cookie"].lower()
    assert cookie.startswith("careloop_login=") and "httponly" in cookie
    assert "samesite=lax" in cookie


def test_signing_in_opens_a_session_and_goes_on_to_next(
    browser: TestClient, account: Account, engine: Engine
) -> None:
    signed = sign_in(browser, account.email.upper(), next_path="/alerts/a-1")
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/alerts/a-1"
    cookies = signed.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(f"{COOKIE}="))
    assert "httponly" in session_cookie.lower() and "samesite=lax" in session_cookie.lower()
    assert "secure" not in session_cookie.lower()  # http; https is tested below
    assert browser.get("/inbox", follow_redirects=False).headers.get("location") != (
        "/login?next=/inbox"
    )
    clinician = _clinician(engine, account.clinician_id)
    assert clinician.last_login_at is not None and clinician.failed_logins == 0
    with session_scope(engine) as session:
        row = session.get(ClinicianSession, browser.cookies[COOKIE])
        assert row is not None and row.clinician_id == account.clinician_id
        assert row.tenant_id == account.tenant_id


def test_without_next_the_inbox_and_never_another_site(
    browser: TestClient, account: Account
) -> None:
    assert sign_in(browser, account.email).headers["location"] == "/inbox"
    other = sign_in(browser, account.email, next_path="//evil.example/x")
    assert other.headers["location"] == "/inbox"
    assert (
        sign_in(browser, account.email, next_path="https://evil.example").headers["location"]
        == "/inbox"
    )


def _without_token(text: str) -> str:
    return text.split('name="csrf_token"')[0] + text.split('name="next"')[1]


def test_wrong_password_and_unknown_email_answer_the_same(
    browser: TestClient, account: Account
) -> None:
    wrong = sign_in(browser, account.email, "not the password at all")
    unknown = sign_in(browser, "nobody-here@example.org", "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert WRONG in wrong.text and 'id="password"' in wrong.text
    assert COOKIE not in browser.cookies
    assert _without_token(wrong.text).replace(account.email, "E") == _without_token(
        unknown.text
    ).replace("nobody-here@example.org", "E")


def test_failures_lock_the_account_and_a_success_resets_them(
    browser: TestClient, account: Account, engine: Engine
) -> None:
    for _ in range(MAX_FAILURES - 1):
        assert sign_in(browser, account.email, "wrong password!").status_code == 401
    assert _clinician(engine, account.clinician_id).failed_logins == MAX_FAILURES - 1
    assert sign_in(browser, account.email).status_code == 303
    assert _clinician(engine, account.clinician_id).failed_logins == 0

    for _ in range(MAX_FAILURES):
        sign_in(browser, account.email, "wrong password!")
    locked = _clinician(engine, account.clinician_id)
    assert locked.locked_until is not None
    assert locked.locked_until - utcnow() > LOCKOUT - timedelta(minutes=1)
    refused = sign_in(TestClient(browser.app, base_url=BASE_URL), account.email)
    assert (
        refused.status_code == 401 and WRONG in refused.text and "try again later" in refused.text
    )

    with session_scope(engine) as session:  # the lock runs out
        row = session.get(Clinician, account.clinician_id)
        assert row is not None
        row.locked_until = utcnow() - timedelta(seconds=1)
        session.add(row)
    assert sign_in(TestClient(browser.app, base_url=BASE_URL), account.email).status_code == 303
    after = _clinician(engine, account.clinician_id)
    assert after.locked_until is None and after.failed_logins == 0


def test_the_form_needs_its_csrf_token_and_cookie(browser: TestClient, account: Account) -> None:
    form = {"email": account.email, "password": PASSWORD}
    assert browser.post("/login", data=form).status_code == 403  # no token, no cookie
    token = login_token(browser)
    assert browser.post("/login", data={**form, "csrf_token": "x" + token}).status_code == 403
    with TestClient(browser.app, base_url=BASE_URL) as attacker:
        # a token the attacker fetched is bound to the attacker's cookie, not the victim's
        stolen = login_token(attacker)
    browser.cookies.clear()
    login_token(browser)
    assert browser.post("/login", data={**form, "csrf_token": stolen}).status_code == 403
    assert COOKIE not in browser.cookies


def test_every_sign_in_is_a_new_session(
    browser: TestClient, account: Account, engine: Engine
) -> None:
    planted = "A" * 43
    browser.cookies.set(
        COOKIE, planted, domain="testserver.local"
    )  # an id fixed by an attacker names nothing
    assert sign_in(browser, account.email).status_code == 303
    first = browser.cookies[COOKIE]
    assert first != planted
    assert sign_in(browser, account.email).status_code == 303
    second = browser.cookies[COOKIE]
    assert second != first
    with session_scope(engine) as session:
        assert session.get(ClinicianSession, first) is None  # the previous one ended
        assert session.get(ClinicianSession, second) is not None


def test_logout_needs_the_session_csrf_token(
    browser: TestClient, account: Account, engine: Engine
) -> None:
    sign_in(browser, account.email)
    session_id = browser.cookies[COOKIE]
    with session_scope(engine) as session:
        row = session.get(ClinicianSession, session_id)
        assert row is not None
        csrf = row.csrf_token
    refused = browser.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
    out = browser.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (
        f'{COOKIE}=""' in out.headers["set-cookie"]
        or "max-age=0" in out.headers["set-cookie"].lower()
    )
    with session_scope(engine) as session:
        assert session.get(ClinicianSession, session_id) is None
    # Without a session, signing out just lands on the sign-in page.
    assert browser.post("/logout", follow_redirects=False).headers["location"] == "/login"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"email": "a@example.org"}', "application/json"),
        (b"email=" + b"a" * 400 + b"@example.org&password=x&csrf_token=t", None),
        (b"email=a%40example.org&password=" + b"p" * 1100 + b"&csrf_token=t", None),
        (b"email=a%FF%FE@example.org&password=x&csrf_token=t", None),
        (b"email=a%00@example.org&password=x&csrf_token=t", None),
        (b"&".join(b"f%d=1" % i for i in range(40)), None),
        (b"\xff\xfe\x00", None),
    ],
    ids=["json", "long-email", "long-password", "not-utf8", "nul", "many-fields", "binary"],
)
def test_a_hostile_form_gets_a_4xx_page(
    browser: TestClient, content: bytes, content_type: str | None
) -> None:
    login_token(browser)
    headers = {"content-type": content_type or "application/x-www-form-urlencoded"}
    response = browser.post("/login", content=content, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert 'id="email"' in response.text


def test_sign_in_attempts_are_limited_per_address(settings: Settings, engine: Engine) -> None:
    limited = settings.model_copy(update={"rate_limit_login_per_ip": "3/minute"})
    with TestClient(create_app(limited, engine), base_url=BASE_URL) as browser:
        for n in range(3):
            assert sign_in(browser, f"sprayed-{n}@example.org", "guess-guess").status_code == 401
        refused = sign_in(browser, "sprayed-4@example.org", "guess-guess")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "try again later" in refused.text


def test_over_https_the_cookies_are_secure_and_host_only(
    settings: Settings, engine: Engine
) -> None:
    account = new_account(engine)
    https = settings.model_copy(update={"base_url": "https://testserver"})
    with TestClient(create_app(https, engine), base_url="https://testserver") as browser:
        form_cookie = browser.get("/login").headers["set-cookie"].lower()
        assert form_cookie.startswith("__host-careloop_login=") and "secure" in form_cookie
        signed = sign_in(browser, account.email)
        assert signed.status_code == 303, signed.text
        cookie = next(
            c for c in signed.headers.get_list("set-cookie") if c.startswith(f"__Host-{COOKIE}=")
        ).lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "path=/" in cookie and "domain" not in cookie


def test_a_clinician_is_signed_in_to_their_own_tenant_only(
    browser: TestClient, engine: Engine, settings: Settings
) -> None:
    mine, theirs = new_account(engine), new_account(engine)
    sign_in(browser, mine.email)
    with session_scope(engine) as session:
        row = session.get(ClinicianSession, browser.cookies[COOKIE])
        assert row is not None
        assert row.tenant_id == mine.tenant_id != theirs.tenant_id
    assert signed_in_tenant(browser, engine, settings) == mine.tenant_id


def signed_in_tenant(browser: TestClient, engine: Engine, settings: Settings) -> str | None:
    """The tenant ``signed_in`` reads from the browser's cookie."""
    from starlette.requests import Request

    cookie = f"{COOKIE}={browser.cookies[COOKIE]}".encode()
    request = Request({"type": "http", "headers": [(b"cookie", cookie)], "path": "/"})
    with session_scope(engine) as session:
        found = signed_in(request, session, settings)
    return found.tenant_id if found else None


def test_passwords_and_emails_stay_out_of_the_logs(
    browser: TestClient, account: Account, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        sign_in(browser, account.email, "canary-password-wrong")
        sign_in(browser, account.email)
    assert caplog.records  # the access log saw the requests
    assert "canary-password" not in caplog.text and PASSWORD not in caplog.text
    assert account.email not in caplog.text
