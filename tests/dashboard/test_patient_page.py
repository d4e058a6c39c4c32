"""The patient page: charts with bands and goals, items, measurement-based care, isolation."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import Caller, make_caller
from support.clinicians import signed_in_browser
from support.patient_data import (
    cookie_header,
    gad7_answers,
    goal,
    open_alert,
    phq9_answers,
    post_fhir,
    post_reports,
    report,
    session_in,
    tenant_id,
)

from careloop.services.clinicians.sessions import COOKIE, open_session
from careloop.services.db import utcnow
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope

PHQ9 = [18, 16, 15, 13, 12, 10, 9, 8]
ITEM9 = [0, 1, 0, 2, 0, 0, 0, 0]


def _patient(caller: Caller, name: str = "pp-1") -> str:
    now = utcnow()
    start = now - timedelta(weeks=len(PHQ9))
    reports = [
        report(name, "phq-9", start + timedelta(weeks=i), answers=phq9_answers(t, ITEM9[i]))
        for i, t in enumerate(PHQ9)
    ]
    reports += [
        report(name, "gad-7", start + timedelta(weeks=i, hours=1), answers=gad7_answers(12 - i))
        for i in range(len(PHQ9))
    ]
    reports += [
        report(name, "mood", start + timedelta(days=d, hours=20), value=d % 10)
        for d in range(7 * len(PHQ9))
    ]
    reports += [
        report(name, "sleep-duration", start + timedelta(days=d, hours=7), value=6.5)
        for d in range(7 * len(PHQ9))
    ]
    return post_reports(caller, reports)


@pytest.fixture
def page(
    caller: Caller, app_client: TestClient, engine: Engine, settings: Settings
) -> tuple[str, str, str]:
    """A patient with scores, a goal, a session and an alert; the page's HTML and ids."""
    patient = _patient(caller)
    post_fhir(caller, goal(patient, "44261-6", 9))
    created = caller.post(
        "/v1/telehealth-sessions", json=session_in("pp-1", utcnow() - timedelta(weeks=3))
    )
    assert created.status_code == 201, created.text
    tenant = tenant_id(engine, caller)
    alert = open_alert(engine, settings, tenant, patient, "phq9-item9", "critical")
    browser = signed_in_browser(engine, tenant)
    response = app_client.get(f"/patients/{patient}", headers=cookie_header(browser))
    assert response.status_code == 200, response.text
    return response.text, patient, alert


def _svg(html: str, testid: str) -> str:
    match = re.search(rf'<svg [^>]*data-testid="{testid}".*?</svg>', html, re.S)
    assert match, f"no chart {testid}"
    return match.group(0)


def test_score_charts_have_bands_goal_markers_and_text_alternatives(
    page: tuple[str, str, str],
) -> None:
    html, _, alert = page
    phq9 = _svg(html, "chart-phq9")
    bands = re.findall(r'data-band="([a-z-]+)"', phq9)
    assert bands == ["minimal", "mild", "moderate", "moderately-severe", "severe"]
    assert phq9.count('data-testid="goal-line"') == 1 and 'stroke-dasharray="6 4"' in phq9
    assert "<title" in phq9 and "<desc" in phq9 and 'role="img"' in phq9
    assert phq9.count("<circle") == len(PHQ9)
    assert 'data-testid="encounter-marker"' in phq9
    assert f'href="/alerts/{alert}"' in phq9
    gad7 = _svg(html, "chart-gad7")
    assert re.findall(r'data-band="([a-z-]+)"', gad7) == ["minimal", "mild", "moderate", "severe"]
    assert 'data-testid="goal-line"' not in gad7
    assert 'data-testid="chart-phq9-data"' in html and 'data-testid="chart-gad7-data"' in html
    for daily in ("chart-mood", "chart-sleep"):
        _svg(html, daily)
        assert f'data-testid="{daily}-data"' in html
    assert "style=" not in html and "<style" not in html and "<script" not in html


def test_item9_history_and_open_alerts(page: tuple[str, str, str]) -> None:
    html, _, alert = page
    table = re.search(r'<table class="items" data-testid="item9-history">.*?</table>', html, re.S)
    assert table
    values = re.findall(r'data-testid="item9-value"[^>]*>(\d)', table.group(0))
    assert values == [str(v) for v in ITEM9[::-1]]  # newest first
    assert "positive on 2 of 8 PHQ-9s" in html
    open_section = re.search(r'data-testid="open-alerts".*?</section>', html, re.S)
    assert open_section and f'href="/alerts/{alert}"' in open_section.group(0)
    assert 'data-testid="alert-history-row"' in html


def test_measurement_based_care_summary_names_its_method(page: tuple[str, str, str]) -> None:
    html, _, _ = page
    summary = re.search(r'data-testid="mbc-summary".*?</section>', html, re.S)
    assert summary
    text = summary.group(0)
    assert 'data-testid="mbc-phq-9"' in text and 'data-testid="mbc-gad-7"' in text
    response = re.search(r'data-testid="mbc-phq-9-response">(.*?)</dd>', text, re.S)
    assert response and "Yes" in response.group(1)  # 18 -> 8
    assert "Jacobson &amp; Truax 1991" in text


def test_other_tenants_and_unknown_patients_are_404(
    page: tuple[str, str, str], app_client: TestClient, engine: Engine
) -> None:
    _, patient, _ = page
    other = make_caller(app_client, engine)
    stranger = signed_in_browser(engine, tenant_id(engine, other))
    response = app_client.get(f"/patients/{patient}", headers=cookie_header(stranger))
    assert response.status_code == 404 and "text/html" in response.headers["content-type"]
    assert patient not in response.text
    missing = app_client.get("/patients/no-such-patient", headers=cookie_header(stranger))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/patients/" + "a" * 65,
        "/patients/bad%20id",
        "/patients/x%3Cscript%3E",
        "/patients/..%2F..%2Fetc",
        "/patients/%00",
    ],
)
def test_hostile_paths_are_4xx(
    caller: Caller, app_client: TestClient, engine: Engine, path: str
) -> None:
    browser = signed_in_browser(engine, tenant_id(engine, caller))
    response = app_client.get(path, headers=cookie_header(browser))
    assert 400 <= response.status_code < 500
    assert "<script>" not in response.text


@pytest.mark.parametrize(
    "query", ["months=7", "months=-1", "months=1e9", "months=%00", "months=12&months=x"]
)
def test_hostile_queries_are_4xx(
    page: tuple[str, str, str], app_client: TestClient, engine: Engine, caller: Caller, query: str
) -> None:
    _, patient, _ = page
    browser = signed_in_browser(engine, tenant_id(engine, caller))
    response = app_client.get(f"/patients/{patient}?{query}", headers=cookie_header(browser))
    assert 400 <= response.status_code < 500


def test_period_choice_and_sign_in_redirect(
    page: tuple[str, str, str], app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    _, patient, _ = page
    browser = signed_in_browser(engine, tenant_id(engine, caller))
    short = app_client.get(f"/patients/{patient}?months=1", headers=cookie_header(browser))
    assert short.status_code == 200
    assert _svg(short.text, "chart-phq9").count("<circle") < len(PHQ9)
    anonymous = app_client.get(f"/patients/{patient}", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login?next=/patients/")


def test_a_patient_without_questionnaires_still_has_a_page(
    caller: Caller, app_client: TestClient, engine: Engine
) -> None:
    patient = post_reports(caller, [report("pp-empty", "mood", utcnow(), value=4)])
    browser = signed_in_browser(engine, tenant_id(engine, caller))
    response = app_client.get(f"/patients/{patient}", headers=cookie_header(browser))
    assert response.status_code == 200
    assert "No PHQ-9 in this period." in response.text and "no score" in response.text
    assert 'data-testid="open-alerts-none"' in response.text
    assert "pp-empty" in response.text  # labelled by the app's identifier


def test_an_ehr_launch_session_lands_on_its_patient(
    caller: Caller, app_client: TestClient, engine: Engine
) -> None:
    patient = post_reports(caller, [report("pp-launch", "mood", utcnow(), value=6)])
    with session_scope(engine) as session:
        row = open_session(session, tenant_id(engine, caller), None, patient_id=patient)
        cookie = {"Cookie": f"{COOKIE}={row.id}"}
    page = app_client.get(f"/patients/{patient}", headers=cookie)
    assert page.status_code == 200 and 'data-testid="launch-context"' in page.text
    caseload = app_client.get("/caseload", headers=cookie)
    assert f'data-testid="launched-patient" href="/patients/{patient}"' in caseload.text
