"""The caseload: who needs attention first, labels, trends, my patients, isolation."""

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
    open_alert,
    phq9_answers,
    post_fhir,
    post_reports,
    report,
    tenant_id,
)

from careloop.services.db import utcnow
from careloop.services.settings import Settings


def _scores(caller: Caller, name: str, phq9: list[int], weeks_apart: int = 1) -> str:
    start = utcnow() - timedelta(weeks=weeks_apart * len(phq9))
    reports = [
        report(name, "phq-9", start + timedelta(weeks=weeks_apart * i), answers=phq9_answers(t))
        for i, t in enumerate(phq9)
    ]
    reports.append(report(name, "gad-7", start, answers=gad7_answers(6)))
    return post_reports(caller, reports)


def _rows(html: str) -> list[tuple[str, str]]:
    return re.findall(
        r'data-testid="caseload-row" data-patient-id="([^"]+)" data-tier="(\d)"', html
    )


def test_sorted_by_who_needs_attention_first(
    caller: Caller, app_client: TestClient, engine: Engine, settings: Settings
) -> None:
    tenant = tenant_id(engine, caller)
    calm = _scores(caller, "cl-calm", [6, 5])
    worst_score = _scores(caller, "cl-worst", [15, 22])
    stuck = _scores(caller, "cl-stuck", [14, 14, 13, 13, 13, 13, 13, 13])  # 7 weeks, 7% better
    overdue = _scores(caller, "cl-overdue", [8, 7])
    warned = _scores(caller, "cl-warned", [3, 4])
    critical = _scores(caller, "cl-critical", [2, 2])
    open_alert(engine, settings, tenant, overdue, "missed-checkin", "info")
    open_alert(engine, settings, tenant, warned, "gad7-total", "warning")
    open_alert(engine, settings, tenant, critical, "phq9-item9", "critical")
    browser = signed_in_browser(engine, tenant)
    response = app_client.get("/caseload", headers=cookie_header(browser))
    assert response.status_code == 200, response.text
    order = [pid for pid, _ in _rows(response.text)]
    assert order == [critical, warned, overdue, stuck, worst_score, calm]
    assert [tier for _, tier in _rows(response.text)] == ["0", "1", "2", "3", "4", "4"]
    assert f'href="/patients/{critical}"' in response.text
    # Trends carry words, not colour only; labels are the app identifiers, not uuid prefixes.
    assert "up from 15 (worse)" in response.text and "down from 6 (better)" in response.text
    assert "cl-worst" in response.text and "Check-in overdue" in response.text
    assert 'data-testid="caseload-overdue"' in response.text


def test_my_patients_by_care_team(caller: Caller, app_client: TestClient, engine: Engine) -> None:
    mine = _scores(caller, "cl-mine", [10])
    theirs = _scores(caller, "cl-theirs", [12])
    practitioner = post_fhir(caller, {"resourceType": "Practitioner", "name": [{"text": "Dr A"}]})
    reference = f"Practitioner/{practitioner['id']}"
    post_fhir(
        caller,
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": f"Patient/{mine}"},
            "participant": [{"member": {"reference": reference}}],
        },
    )
    browser = signed_in_browser(engine, tenant_id(engine, caller), practitioner=reference)
    own = app_client.get("/caseload", headers=cookie_header(browser))
    assert [pid for pid, _ in _rows(own.text)] == [mine]
    assert 'data-testid="caseload-filter"' in own.text
    everyone = app_client.get("/caseload?show=all", headers=cookie_header(browser))
    assert {pid for pid, _ in _rows(everyone.text)} == {mine, theirs}


def test_only_the_tenants_patients(caller: Caller, app_client: TestClient, engine: Engine) -> None:
    _scores(caller, "cl-elsewhere", [9])
    other = make_caller(app_client, engine)
    browser = signed_in_browser(engine, tenant_id(engine, other))
    response = app_client.get("/caseload", headers=cookie_header(browser))
    assert response.status_code == 200 and _rows(response.text) == []
    assert 'data-testid="caseload-empty"' in response.text


@pytest.mark.parametrize("query", ["show=everyone", "show=%00", "show=" + "a" * 3000])
def test_hostile_queries_are_4xx(
    caller: Caller, app_client: TestClient, engine: Engine, query: str
) -> None:
    browser = signed_in_browser(engine, tenant_id(engine, caller))
    response = app_client.get(f"/caseload?{query}", headers=cookie_header(browser))
    assert 400 <= response.status_code < 500
