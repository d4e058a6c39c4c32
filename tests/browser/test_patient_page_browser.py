"""The patient page in Chromium: sign in, open a patient from the caseload, read the trend.

The patient is posted through the real API (weekly PHQ-9 and GAD-7, a PHQ-9 Goal, a positive
item 9 that opens a critical alert), into a tenant of its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.browser import Shoot
from support.clients import Caller, make_caller
from support.clinicians import add_clinician
from support.live_server import LiveServer

from careloop.services.clinicians.passwords import hash_password
from careloop.services.db import utcnow
from careloop.services.tenancy.models import Tenant
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

SYSTEM = "https://app.example/patients"
PASSWORD = "synthetic-chart-password-7"
PHQ9 = [18, 16, 15, 13, 12, 10, 9, 8]
ITEM9 = [0, 1, 0, 2, 0, 0, 0, 0]
GAD7 = [14, 13, 12, 11, 9, 8, 7, 6]
PHQ9_TOTAL = "44261-6"


def _answers(total: int, items: int, last: int = 0) -> list[int]:
    """Item scores (0..3) adding up to ``total``, the last item fixed at ``last``."""
    rest = total - last
    free = items - 1
    scores = [min(3, max(0, rest - 3 * i)) for i in range(free)]
    assert sum(scores) == rest
    return [*scores, last]


def _report(value: str, instrument: str, answers: list[int], when: Any) -> dict[str, Any]:
    return {
        "patient": {"system": SYSTEM, "value": value},
        "instrument": instrument,
        "effective": when.isoformat(),
        "answers": answers,
    }


@dataclass(frozen=True)
class Charted:
    """A patient with eight weeks of scores and a clinician who signs in by password."""

    patient_id: str
    email: str


@pytest.fixture(scope="module")
def charted(server: LiveServer, engine: Engine) -> Iterator[Charted]:
    """The module's patient, posted through the API of the served careloop."""
    with TestClient(create_app(server.settings, engine), base_url=server.origin) as api:
        caller: Caller = make_caller(api, engine)
        value = f"chart-{uuid.uuid4().hex[:8]}"
        start = utcnow() - timedelta(weeks=len(PHQ9))
        reports = [
            _report(value, "phq-9", _answers(t, 9, ITEM9[i]), start + timedelta(weeks=i))
            for i, t in enumerate(PHQ9)
        ] + [
            _report(value, "gad-7", _answers(t, 7), start + timedelta(weeks=i, hours=1))
            for i, t in enumerate(GAD7)
        ]
        posted = caller.post("/v1/symptom-reports/batch", json=reports)
        assert posted.status_code in (200, 201, 207), posted.text
        patient_id = posted.json()["results"][0]["patient"].removeprefix("Patient/")
        goal = {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "PHQ-9 at or below 9"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "target": [
                {
                    "measure": {"coding": [{"system": "http://loinc.org", "code": PHQ9_TOTAL}]},
                    "detailRange": {"high": {"value": 9}},
                }
            ],
        }
        assert caller.post("/fhir/Goal", json=goal).status_code == 201
        run_pending(engine, server.settings)
        with Session(engine) as session:
            tenant = session.exec(select(Tenant.id).where(Tenant.name == caller.tenant)).one()
        email = f"chart-{uuid.uuid4().hex[:8]}@careloop.example"
        add_clinician(
            engine,
            tenant,
            name="Dr Chart Reader",
            email=email,
            password_hash=hash_password(PASSWORD),
        )
        yield Charted(patient_id, email)


def test_open_a_patient_from_the_caseload_and_read_the_trend(
    page: Page, charted: Charted, shoot: Shoot
) -> None:
    page.goto("/caseload")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)caseload$"))
    page.locator("#email").fill(charted.email)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/caseload$"))
    row = page.locator(f'[data-testid="caseload-row"][data-patient-id="{charted.patient_id}"]')
    expect(row.get_by_test_id("caseload-alerts")).to_have_text(re.compile(r"1\s+critical", re.I))
    shoot("caseload")
    row.get_by_test_id("caseload-patient").click()
    expect(page).to_have_url(re.compile(rf"/patients/{charted.patient_id}$"))
    expect(page.get_by_test_id("patient-label")).to_have_text(re.compile(r"\S"))
    expect(page.get_by_test_id("launch-context")).to_have_count(0)  # signed in, not launched

    phq9 = page.get_by_test_id("chart-phq9")
    expect(phq9).to_be_visible()
    bands = phq9.locator("g.band")
    expect(bands).to_have_count(5)
    assert bands.evaluate_all("gs => gs.map(g => g.dataset.band)") == [
        "minimal",
        "mild",
        "moderate",
        "moderately-severe",
        "severe",
    ]
    expect(phq9.locator("g.band rect").first).to_be_visible()
    expect(phq9.get_by_test_id("goal-line")).to_have_count(1)
    expect(phq9.locator("circle")).to_have_count(len(PHQ9))
    gad7 = page.get_by_test_id("chart-gad7")
    expect(gad7).to_be_visible()
    expect(gad7.locator("g.band")).to_have_count(4)
    box = phq9.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 150  # drawn, not collapsed

    history = page.get_by_test_id("item9-history")
    expect(history).to_be_visible()
    values = history.get_by_test_id("item9-value")
    expect(values).to_have_count(len(PHQ9))
    texts = [t.split()[0] for t in values.all_inner_texts()]
    assert texts == [str(v) for v in ITEM9[::-1]]  # newest first
    expect(page.get_by_test_id("item9-summary")).to_contain_text("positive on 2 of 8 PHQ-9s")

    summary = page.get_by_test_id("mbc-summary")
    expect(summary).to_be_visible()
    expect(summary.get_by_test_id("mbc-phq-9-response")).to_contain_text("Yes")  # 18 -> 8
    expect(summary.get_by_test_id("mbc-gad-7")).to_be_visible()
    expect(summary.get_by_test_id("mbc-method").first).to_contain_text("Jacobson")

    rows = page.get_by_test_id("alert-history-row")
    expect(rows.first).to_be_visible()
    events = page.get_by_test_id("alert-history-events").first
    events.locator("summary").click()
    opened = events.locator('[data-testid="history-entry"][data-kind="opened"]')
    expect(opened.get_by_test_id("history-kind")).to_have_text("Opened")
    expect(opened.get_by_test_id("history-actor")).to_have_text("careloop")
    shoot("patient-page")
