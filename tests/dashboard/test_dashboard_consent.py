"""The dashboard honours consent to care-team alerts: inbox, caseload, patient and alert pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlmodel import Session, select
from support.clients import BASE_URL, Caller
from support.clinicians import SignedInBrowser, signed_in_browser
from support.patient_data import (
    SYSTEM,
    cookie_header,
    open_alert,
    phq9_answers,
    post_reports,
    report,
    tenant_id,
)

from careloop.services.alerts.models import Alert
from careloop.services.audit.models import AuditRecord
from careloop.services.dashboard.consent import NOTICE
from careloop.services.db import utcnow
from careloop.services.settings import Settings
from careloop.workflows.web import create_app

ROW = re.compile(r'data-testid="alert-row" data-alert-id="([^"]+)"')
CASELOAD_ROW = re.compile(r'data-testid="caseload-row" data-patient-id="([^"]+)"')
WITHHELD_ROW = re.compile(r'data-testid="withheld-row" data-patient-id="([^"]+)"')
SLEEP = 9.75
"""A planted reading: shown on a consenting patient's page, never on a withheld one."""


@contextmanager
def _browser(
    settings: Settings, engine: Engine, clinician: SignedInBrowser
) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as http:
        http.cookies.update(clinician.cookies)
        yield http


@pytest.fixture
def clinician(engine: Engine, caller: Caller) -> SignedInBrowser:
    """A clinician of the caller's tenant, signed in."""
    return signed_in_browser(engine, tenant_id(engine, caller))


@pytest.fixture
def browser(
    app_client: TestClient, settings: Settings, engine: Engine, clinician: SignedInBrowser
) -> Iterator[TestClient]:
    with _browser(settings, engine, clinician) as http:
        yield http


def _patient(caller: Caller, value: str) -> str:
    """A patient known by the app id ``value`` (their label) with scores and a planted sleep."""
    start = utcnow() - timedelta(weeks=3)
    reports = [
        report(value, "phq-9", start + timedelta(weeks=i), answers=phq9_answers(14 - i))
        for i in range(3)
    ]
    reports.append(report(value, "sleep-duration", start + timedelta(days=1), value=SLEEP))
    return post_reports(caller, reports)


def _alert(engine: Engine, settings: Settings, caller: Caller, patient: str, rule: str) -> str:
    return open_alert(engine, settings, tenant_id(engine, caller), patient, rule, "critical")


def _consent(caller: Caller, value: str, decision: str) -> dict[str, Any]:
    body = {
        "patient": {"system": SYSTEM, "value": value},
        "decision": decision,
        "purpose": "care-team-alerts",
    }
    response = caller.post("/v1/consents", json=body)
    assert response.status_code == 201, response.text
    consent: dict[str, Any] = response.json()
    return consent


def _blocked(engine: Engine, tenant: str) -> list[AuditRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditRecord).where(
                    AuditRecord.tenant_id == tenant,
                    AuditRecord.kind == "egress",
                    AuditRecord.outcome == "blocked",
                )
            ).all()
        )


def test_a_denying_patients_alerts_are_left_out_of_the_inbox_and_caseload(
    browser: TestClient, caller: Caller, engine: Engine, settings: Settings
) -> None:
    shown = _patient(caller, "dc-permits-1")
    hidden = _patient(caller, "dc-denies-1")
    _consent(caller, "dc-denies-1", "deny")
    theirs = _alert(engine, settings, caller, hidden, "dc-planted-rule-hidden")
    mine = _alert(engine, settings, caller, shown, "dc-planted-rule-shown")
    inbox = browser.get("/inbox")
    assert inbox.status_code == 200
    assert ROW.findall(inbox.text) == [mine]
    assert "1 open · 1 alert" in inbox.text
    for planted in (theirs, hidden, "dc-denies-1", "dc-planted-rule-hidden"):
        assert planted not in inbox.text
    assert "dc-permits-1" in inbox.text and "dc-planted-rule-shown" in inbox.text
    # Filtering on the withheld patient finds nothing either.
    assert ROW.findall(browser.get("/inbox", params={"patient": hidden}).text) == []
    caseload = browser.get("/caseload", params={"show": "all"})
    assert caseload.status_code == 200
    assert CASELOAD_ROW.findall(caseload.text) == [shown]
    assert WITHHELD_ROW.findall(caseload.text) == [hidden]
    assert "dc-denies-1" not in caseload.text
    # Lists are not audited per load (a direct view is).
    assert _blocked(engine, tenant_id(engine, caller)) == []


def test_a_denying_patients_page_shows_the_notice_and_none_of_their_data(
    browser: TestClient,
    caller: Caller,
    engine: Engine,
    settings: Settings,
    clinician: SignedInBrowser,
) -> None:
    shown = _patient(caller, "dc-permits-2")
    hidden = _patient(caller, "dc-denies-2")
    denial = _consent(caller, "dc-denies-2", "deny")
    _alert(engine, settings, caller, shown, "dc-rule-of-shown")
    _alert(engine, settings, caller, hidden, "dc-rule-of-hidden")
    allowed = browser.get(f"/patients/{shown}")
    assert allowed.status_code == 200
    assert "dc-permits-2" in allowed.text and "dc-rule-of-shown" in allowed.text
    assert str(SLEEP) in allowed.text  # the planted reading is on a shown page
    withheld = browser.get(f"/patients/{hidden}")
    assert withheld.status_code == 403
    assert withheld.headers["cache-control"] == "no-store"
    assert NOTICE in withheld.text and hidden in withheld.text
    for planted in ("dc-denies-2", "dc-rule-of-hidden", str(SLEEP), "chart-phq9", "PHQ-9"):
        assert planted not in withheld.text
    [record] = _blocked(engine, tenant_id(engine, caller))
    assert record.purpose == "care-team-alerts"
    assert record.destination == f"dashboard:{clinician.clinician_id}"
    assert record.entity == f"Patient/{hidden}"
    assert record.agent == f"clinician:{clinician.clinician_id}"
    assert "dc-denies-2" not in record.model_dump_json()
    assert denial["id"]  # the deciding Consent was recorded through the API


def test_a_denying_patients_alert_url_is_the_notice_and_cannot_be_acted_on(
    browser: TestClient,
    caller: Caller,
    engine: Engine,
    settings: Settings,
    clinician: SignedInBrowser,
) -> None:
    hidden = _patient(caller, "dc-denies-3")
    _consent(caller, "dc-denies-3", "deny")
    alert_id = _alert(engine, settings, caller, hidden, "dc-rule-alert-url")
    page = browser.get(f"/alerts/{alert_id}")
    assert page.status_code == 403
    assert NOTICE in page.text
    assert "dc-rule-alert-url" not in page.text and "dc-denies-3" not in page.text
    for action in ("acknowledge", "resolve"):
        posted = browser.post(
            f"/alerts/{alert_id}/{action}", data={"csrf_token": clinician.csrf_token}
        )
        assert posted.status_code == 403
        assert NOTICE in posted.text
    with Session(engine) as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None and alert.status == "open"
    assert len(_blocked(engine, tenant_id(engine, caller))) == 3


def test_revocation_and_a_new_denial_take_effect_on_the_next_load(
    browser: TestClient, caller: Caller, engine: Engine, settings: Settings
) -> None:
    patient = _patient(caller, "dc-changes-mind")
    alert_id = _alert(engine, settings, caller, patient, "dc-rule-changes")
    assert ROW.findall(browser.get("/inbox").text) == [alert_id]
    denial = _consent(caller, "dc-changes-mind", "deny")
    assert ROW.findall(browser.get("/inbox").text) == []
    assert browser.get(f"/patients/{patient}").status_code == 403
    revoked = caller.post(f"/v1/consents/{denial['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert ROW.findall(browser.get("/inbox").text) == [alert_id]
    assert browser.get(f"/patients/{patient}").status_code == 200
    assert browser.get(f"/alerts/{alert_id}").status_code == 200


def test_the_tenant_policy_deny_hides_patients_without_a_consent(
    app_client: TestClient,
    caller: Caller,
    engine: Engine,
    settings: Settings,
    clinician: SignedInBrowser,
) -> None:
    tenant = tenant_id(engine, caller)
    strict = settings.model_copy(
        update={"consent_defaults": f"{settings.consent_defaults},{tenant}:care-team-alerts=deny"}
    )
    silent = _patient(caller, "dc-no-consent")
    permits = _patient(caller, "dc-permits-policy")
    _consent(caller, "dc-permits-policy", "permit")
    _alert(engine, settings, caller, silent, "dc-rule-silent")
    shown = _alert(engine, settings, caller, permits, "dc-rule-permits")
    with _browser(strict, engine, clinician) as http:
        assert ROW.findall(http.get("/inbox").text) == [shown]
        caseload = http.get("/caseload").text
        assert CASELOAD_ROW.findall(caseload) == [permits]
        assert WITHHELD_ROW.findall(caseload) == [silent]
        page = http.get(f"/patients/{silent}")
        assert page.status_code == 403 and NOTICE in page.text
    [record] = _blocked(engine, tenant)
    assert record.outcome == "blocked" and record.entity == f"Patient/{silent}"
    # Under the default policy (permit) the same patient is shown.
    default = app_client.get("/inbox", headers=cookie_header(clinician))
    assert len(ROW.findall(default.text)) == 2


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_inbox_reads_consents_once_whatever_the_patients(
    browser: TestClient, caller: Caller, engine: Engine, settings: Settings
) -> None:
    tenant = tenant_id(engine, caller)
    for i in range(2):
        open_alert(engine, settings, tenant, f"dc-few-{i}", "dc-rule", "warning")
    assert browser.get("/inbox").status_code == 200  # the first load also touches the session
    with _statements(engine) as few:
        assert browser.get("/inbox").status_code == 200
    for i in range(20):
        open_alert(engine, settings, tenant, f"dc-many-{i}", "dc-rule", "warning")
    with _statements(engine) as many:
        page = browser.get("/inbox")
    assert len(ROW.findall(page.text)) == 22
    assert len(many) == len(few), (few, many)  # one batched consent read, not one per row
