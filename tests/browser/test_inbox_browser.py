"""A clinician in Chromium: sign in, the critical alert first, open it, acknowledge with a note.

The data is what ``careloop demo`` seeds (weeks of synthetic PHQ-9 and GAD-7, one item-9
alert), so the demo a newcomer sees is the one tested.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.browser import Shoot, add_session_cookie
from support.clinicians import signed_in_browser
from support.live_server import LiveServer

from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import alert_json
from careloop.workflows.cli.demo import demo_clinician, seed_demo

PASSWORD = "synthetic-demo-password-1"


@dataclass(frozen=True)
class Demo:
    """The seeded demo tenant, its critical alert and a clinician who signs in by password."""

    tenant_id: str
    practitioner: str
    critical_alert: str
    email: str


@pytest.fixture(scope="module")
def demo(server: LiveServer, engine: Engine) -> Iterator[Demo]:
    """``careloop demo``'s tenant in the module's database, with its own clinician."""
    seeded = seed_demo(server.settings, engine)
    email = f"demo-{uuid.uuid4().hex[:8]}@careloop.example"
    demo_clinician(engine, seeded.tenant_id, email, PASSWORD, seeded.practitioners[0])
    [critical] = [a for a in seeded.alerts if a["severity"] == "critical"]
    yield Demo(seeded.tenant_id, seeded.practitioners[0], critical["id"], email)


def _signed_in(context: BrowserContext, server: LiveServer, engine: Engine, demo: Demo) -> None:
    browser = signed_in_browser(engine, demo.tenant_id, demo.practitioner, name="Dr. Demo Primary")
    add_session_cookie(context, server.origin, browser.session_id)


def test_sign_in_by_the_login_form_then_the_inbox(page: Page, demo: Demo, shoot: Shoot) -> None:
    """The /login contract: email, password, "Sign in", back to where the browser was going."""
    page.goto("/inbox")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)inbox$"))
    shoot("login")
    page.locator("#email").fill(demo.email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.get_by_test_id("alert-row").first).to_have_attribute("data-severity", "critical")
    shoot("inbox-after-sign-in")


def test_the_alert_link_of_a_webhook_opens_the_alert_after_sign_in(
    page: Page, server: LiveServer, engine: Engine, demo: Demo, shoot: Shoot
) -> None:
    with Session(engine) as session:
        alert = session.exec(select(Alert).where(Alert.id == demo.critical_alert)).one()
    link = alert_json(alert, server.settings.base_url)["link"]
    assert link == f"{server.origin}/alerts/{demo.critical_alert}"
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.locator("#email").fill(demo.email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(link)
    expect(page.get_by_test_id("alert-title")).to_contain_text("item 9")
    shoot("alert-from-link")


def test_a_wrong_password_is_refused(page: Page, demo: Demo, shoot: Shoot) -> None:
    page.goto("/login")
    page.locator("#email").fill(demo.email)
    page.locator("#password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Email or password is wrong")).to_be_visible()
    shoot("wrong-password")


def test_critical_first_open_it_and_acknowledge_with_a_note_by_keyboard(
    page: Page,
    context: BrowserContext,
    server: LiveServer,
    engine: Engine,
    demo: Demo,
    shoot: Shoot,
) -> None:
    _signed_in(context, server, engine, demo)
    page.goto("/inbox")
    rows = page.get_by_test_id("alert-row")
    first = rows.first
    expect(first).to_have_attribute("data-severity", "critical")
    expect(first).to_have_attribute("data-alert-id", demo.critical_alert)
    expect(first.get_by_test_id("severity")).to_have_text("Critical")
    expect(page.get_by_role("link", name="Inbox")).to_have_attribute("aria-current", "page")
    shoot("inbox")

    first.get_by_test_id("alert-link").click()
    expect(page).to_have_url(re.compile(rf"/alerts/{demo.critical_alert}$"))
    expect(page.get_by_test_id("alert-title")).to_contain_text("item 9")
    expect(page.get_by_test_id("reason").first).to_be_visible()
    expect(page.get_by_test_id("reading")).to_contain_text("PHQ-9")
    expect(page.get_by_test_id("item-crossed")).to_contain_text("better off dead")
    expect(page.get_by_test_id("alert-status")).to_have_text("Open")
    shoot("alert")

    note = "Phoned the patient; same-day C-SSRS booked. Safety plan reviewed."
    page.get_by_label("Note for acknowledging (optional)").fill(note)
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("ack-submit")).to_be_focused()
    shoot("note-typed")
    page.keyboard.press("Enter")

    expect(page).to_have_url(re.compile(rf"/alerts/{demo.critical_alert}\?done=acknowledged$"))
    expect(page.get_by_test_id("flash")).to_contain_text("acknowledged")
    expect(page.get_by_test_id("alert-status")).to_have_text("Acknowledged")
    entry = page.get_by_test_id("history-entry").filter(has_text="Acknowledged")
    expect(entry).to_have_attribute("data-kind", "acknowledged")
    expect(entry.get_by_test_id("history-note")).to_have_text(note)
    expect(entry).to_contain_text("Dr. Demo Primary")
    expect(page.get_by_test_id("ack-form")).to_have_count(0)
    shoot("acknowledged")

    with Session(engine) as session:
        alert = session.exec(select(Alert).where(Alert.id == demo.critical_alert)).one()
    assert alert.status == "acknowledged"
    assert alert.acknowledged_by == demo.practitioner
    assert alert.acknowledgement_note == note

    page.get_by_role("link", name="Inbox").first.click()
    acknowledged = page.locator(f'[data-alert-id="{demo.critical_alert}"]')
    expect(acknowledged).to_have_attribute("data-status", "acknowledged")
    expect(rows.first).to_have_attribute("data-status", "open")
    shoot("inbox-after")


def test_filter_the_inbox_by_severity(
    page: Page,
    context: BrowserContext,
    server: LiveServer,
    engine: Engine,
    demo: Demo,
    shoot: Shoot,
) -> None:
    _signed_in(context, server, engine, demo)
    page.goto("/inbox")
    page.get_by_label("Severity").select_option("warning")
    page.get_by_label("Status").select_option("open")
    page.get_by_test_id("filter-apply").click()
    expect(page).to_have_url(re.compile(r"/inbox\?severity=warning&status=open&patient=$"))
    rows = page.get_by_test_id("alert-row")
    expect(rows.first).to_be_visible()
    for severity in rows.evaluate_all("rows => rows.map(r => r.dataset.severity)"):
        assert severity == "warning"
    expect(page.get_by_test_id("alert-count")).to_contain_text("matching the filters")
    shoot("filtered")
    page.get_by_test_id("filter-clear").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))


def test_a_bad_filter_is_a_page_not_a_crash(
    page: Page,
    context: BrowserContext,
    server: LiveServer,
    engine: Engine,
    demo: Demo,
    shoot: Shoot,
) -> None:
    _signed_in(context, server, engine, demo)
    response = page.goto("/inbox?severity=%3Cscript%3Ealert(1)%3C/script%3E")
    assert response is not None and response.status == 400
    expect(page.get_by_role("heading", name="Filter not understood")).to_be_visible()
    shoot("bad-filter")
