"""The inbox and alert pages through the app in-process: order, filters, tenancy, CSRF, input."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session
from support.clients import BASE_URL
from support.clinicians import SignedInBrowser, signed_in_browser
from support.inbox import MadeAlert, make_alert, new_tenant

from careloop.services.alerts.models import Alert
from careloop.services.settings import Settings
from careloop.workflows.web import create_app

ROW = re.compile(r'data-testid="alert-row" data-alert-id="([^"]+)"')


@pytest.fixture
def tenant(engine: Engine) -> str:
    """A fresh tenant of this test."""
    return new_tenant(engine)


@pytest.fixture
def clinician(engine: Engine, tenant: str) -> SignedInBrowser:
    """A clinician of ``tenant``, signed in."""
    return signed_in_browser(engine, tenant)


@pytest.fixture
def browser(
    app_client: TestClient, clinician: SignedInBrowser, settings: Settings, engine: Engine
) -> Iterator[TestClient]:
    """A browser of its own (own cookie jar) with ``clinician``'s session cookie."""
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as http:
        http.cookies.update(clinician.cookies)
        yield http


def listed(html: str) -> list[str]:
    """The alert ids of the inbox rows, in order."""
    return ROW.findall(html)


def test_open_alerts_first_by_severity_then_age_then_acknowledged_then_resolved(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str
) -> None:
    def made(severity: str, hours: float, status: str = "open") -> MadeAlert:
        return make_alert(engine, settings, tenant, severity, hours_ago=hours, status=status)

    warning_old = made("warning", 30)
    critical_new = made("critical", 1)
    resolved_old = made("critical", 50, "resolved")
    info = made("info", 60)
    acknowledged = made("critical", 5, "acknowledged")
    critical_old = made("critical", 3)
    high = made("high", 0.5)
    warning_new = made("warning", 2)
    resolved_new = made("warning", 10, "resolved")
    response = browser.get("/inbox")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert listed(response.text) == [
        a.id
        for a in (
            critical_old,
            critical_new,
            high,
            warning_old,
            warning_new,
            info,
            acknowledged,
            resolved_new,
            resolved_old,
        )
    ]
    assert "6 open · 9 alerts" in response.text
    assert "3 h ago" in response.text and "2 d ago" in response.text


def test_filters_by_severity_status_and_patient(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str
) -> None:
    critical = make_alert(engine, settings, tenant, "critical")
    warning = make_alert(engine, settings, tenant, "warning", patient_id=critical.patient_id)
    done = make_alert(engine, settings, tenant, "warning", status="resolved")
    assert listed(browser.get("/inbox?severity=warning").text) == [warning.id, done.id]
    assert listed(browser.get("/inbox?status=resolved").text) == [done.id]
    assert listed(browser.get("/inbox", params={"patient": critical.patient_id}).text) == [
        critical.id,
        warning.id,
    ]
    narrowed = browser.get(
        "/inbox", params={"severity": "warning", "status": "open", "patient": critical.patient_id}
    )
    assert listed(narrowed.text) == [warning.id]
    assert 'data-testid="filter-clear"' in narrowed.text
    assert listed(browser.get("/inbox?severity=&status=&patient=").text) == [
        critical.id,
        warning.id,
        done.id,
    ]
    assert 'data-testid="inbox-empty"' in browser.get("/inbox?severity=info").text


@pytest.mark.parametrize(
    "query",
    [
        "severity=urgent",
        "status=closed",
        "severity=critical&severity=high",
        "patient=" + "a" * 65,
        "patient=..%2F..%2Fetc",
        "patient=%3Cscript%3E",
        "status=" + "x" * 5000,
        "severity=%C3%A9",
    ],
)
def test_hostile_filters_answer_a_400_page(browser: TestClient, query: str) -> None:
    response = browser.get(f"/inbox?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>" not in response.text


def test_control_characters_in_the_query_are_refused(browser: TestClient) -> None:
    assert browser.get("/inbox?patient=%00").status_code == 400


def test_another_tenants_alerts_are_never_listed_nor_shown(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str, clinician: SignedInBrowser
) -> None:
    mine = make_alert(engine, settings, tenant, "warning")
    other_tenant = new_tenant(engine)
    theirs = make_alert(engine, settings, other_tenant, "critical")
    assert listed(browser.get("/inbox").text) == [mine.id]
    assert theirs.patient_id not in browser.get("/inbox").text
    assert listed(browser.get("/inbox", params={"patient": theirs.patient_id}).text) == []
    page = browser.get(f"/alerts/{theirs.id}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    for action in ("acknowledge", "resolve"):
        posted = browser.post(
            f"/alerts/{theirs.id}/{action}",
            data={"csrf_token": clinician.csrf_token, "note": "not mine"},
        )
        assert posted.status_code == 404
    with Session(engine) as session:
        alert = session.get(Alert, theirs.id)
        assert alert is not None and alert.status == "open"


@pytest.mark.parametrize(
    "alert_id", ["nope", "a" * 65, "%3Cb%3E", "x%20y", "00000000-0000-0000-0000-000000000000"]
)
def test_unknown_alert_is_a_404_page(browser: TestClient, alert_id: str) -> None:
    response = browser.get(f"/alerts/{alert_id}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Alert not found" in response.text


def test_a_path_beyond_an_alert_is_not_found(browser: TestClient) -> None:
    assert browser.get("/alerts/..%2F..%2Finbox").status_code == 404


def test_alert_page_shows_reasons_history_and_acknowledge_with_a_note(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str, clinician: SignedInBrowser
) -> None:
    alert = make_alert(engine, settings, tenant, "critical", title="Synthetic item crossed")
    page = browser.get(f"/alerts/{alert.id}")
    assert page.status_code == 200
    for testid in ("reasons", "reading", "ack-form", "resolve-form", "history", "notifications"):
        assert f'data-testid="{testid}"' in page.text
    assert "Synthetic item crossed" in page.text
    assert f'href="/patients/{alert.patient_id}"' in page.text
    assert clinician.csrf_token in page.text
    note = "Called the patient <b>today</b>;\nsafety plan reviewed."
    acked = browser.post(
        f"/alerts/{alert.id}/acknowledge",
        data={"csrf_token": clinician.csrf_token, "note": note},
        follow_redirects=False,
    )
    assert acked.status_code == 303
    assert acked.headers["location"] == f"/alerts/{alert.id}?done=acknowledged"
    after = browser.get(acked.headers["location"])
    assert 'data-testid="flash"' in after.text
    assert 'data-kind="acknowledged"' in after.text
    assert "Called the patient &lt;b&gt;today&lt;/b&gt;;\nsafety plan reviewed." in after.text
    assert 'data-testid="ack-form"' not in after.text
    with Session(engine) as session:
        stored = session.get(Alert, alert.id)
        assert stored is not None
        assert stored.status == "acknowledged"
        assert stored.acknowledgement_note == note
        assert stored.acknowledged_by == f"clinician:{clinician.clinician_id}"
    resolved = browser.post(
        f"/alerts/{alert.id}/resolve",
        data={"csrf_token": clinician.csrf_token, "note": "Seen same day."},
        follow_redirects=False,
    )
    assert resolved.status_code == 303
    final = browser.get(resolved.headers["location"])
    assert 'data-kind="resolved"' in final.text and "Seen same day." in final.text
    assert 'data-testid="resolve-form"' not in final.text
    again = browser.post(
        f"/alerts/{alert.id}/acknowledge", data={"csrf_token": clinician.csrf_token, "note": ""}
    )
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("token", [None, "", "wrong-token", "x" * 5000])
def test_a_form_without_the_sessions_csrf_token_changes_nothing(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str, token: str | None
) -> None:
    alert = make_alert(engine, settings, tenant, "critical")
    data = {"note": "forged"} | ({} if token is None else {"csrf_token": token})
    for action in ("acknowledge", "resolve"):
        response = browser.post(f"/alerts/{alert.id}/{action}", data=data)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")
    with Session(engine) as session:
        stored = session.get(Alert, alert.id)
        assert stored is not None
        assert stored.status == "open" and stored.acknowledgement_note is None


def test_another_sessions_csrf_token_is_refused(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str
) -> None:
    alert = make_alert(engine, settings, tenant, "critical")
    colleague = signed_in_browser(engine, tenant)
    response = browser.post(
        f"/alerts/{alert.id}/acknowledge", data={"csrf_token": colleague.csrf_token}
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("note=" + "n" * 4001, "application/x-www-form-urlencoded", 400),
        ("note=a%00b", "application/x-www-form-urlencoded", 400),
        ("note=a&note=b", "application/x-www-form-urlencoded", 400),
        ('{"note": "json"}', "application/json", 400),
        ("note=%FF%FE", "application/x-www-form-urlencoded", 400),
        ("note=" + "n" * 70_000, "application/x-www-form-urlencoded", 400),
    ],
)
def test_hostile_forms_answer_4xx_and_change_nothing(
    browser: TestClient,
    engine: Engine,
    settings: Settings,
    tenant: str,
    clinician: SignedInBrowser,
    body: str,
    content_type: str,
    status: int,
) -> None:
    alert = make_alert(engine, settings, tenant, "critical")
    response = browser.post(
        f"/alerts/{alert.id}/acknowledge",
        content=f"csrf_token={clinician.csrf_token}&{body}",
        headers={"content-type": content_type},
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    with Session(engine) as session:
        stored = session.get(Alert, alert.id)
        assert stored is not None and stored.status == "open"


@pytest.mark.parametrize("path", ["/inbox", "/inbox?severity=critical", "/alerts/some-alert-id"])
def test_without_a_session_the_browser_is_sent_to_sign_in(
    settings: Settings, engine: Engine, path: str
) -> None:
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as anonymous:
        response = anonymous.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/")
    assert response.headers["location"].endswith(path.replace("?", "%3F").replace("=", "%3D"))


def test_posting_without_a_session_changes_nothing(
    settings: Settings, engine: Engine, tenant: str
) -> None:
    alert = make_alert(engine, settings, tenant, "critical")
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as anonymous:
        response = anonymous.post(
            f"/alerts/{alert.id}/acknowledge", data={"note": "x"}, follow_redirects=False
        )
    assert response.status_code == 303
    with Session(engine) as session:
        stored = session.get(Alert, alert.id)
        assert stored is not None and stored.status == "open"


def test_who_was_paged_and_escalation_are_shown(
    browser: TestClient, engine: Engine, settings: Settings, tenant: str
) -> None:
    from careloop.services.alerts.models import AlertEvent
    from careloop.services.unit_of_work import session_scope

    alert = make_alert(engine, settings, tenant, "critical")
    with session_scope(engine) as session:
        stored = session.get(Alert, alert.id)
        assert stored is not None
        stored.escalation_level = 2
        session.add(stored)
        session.add(
            AlertEvent(
                alert_id=alert.id,
                kind="escalated",
                detail='{"level": 2, "recipients": ["oncall", "Practitioner/p-1"]}',
            )
        )
    inbox = browser.get("/inbox").text
    assert "Level 2" in inbox and "On-call, Practitioner/p-1" in inbox
    page = browser.get(f"/alerts/{alert.id}").text
    assert 'data-kind="escalated"' in page and "paged: On-call, Practitioner/p-1" in page


def test_notes_are_never_logged(
    browser: TestClient,
    engine: Engine,
    settings: Settings,
    tenant: str,
    clinician: SignedInBrowser,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert = make_alert(engine, settings, tenant, "critical")
    caplog.set_level(logging.DEBUG)
    for action, note in (("acknowledge", "zebra-note-4471"), ("resolve", "okapi-note-9902")):
        response = browser.post(
            f"/alerts/{alert.id}/{action}", data={"csrf_token": clinician.csrf_token, "note": note}
        )
        assert response.status_code == 200 and note in response.text
        assert note not in caplog.text
    refused = browser.post(f"/alerts/{alert.id}/resolve", data={"note": "tapir-note-1234"})
    assert refused.status_code == 403
    assert "tapir-note-1234" not in caplog.text and "tapir-note-1234" not in refused.text
