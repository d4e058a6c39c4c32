"""The patient page's default period fits the data it has (at least 3 months, at most 24)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import Caller
from support.clinicians import signed_in_browser
from support.patient_data import cookie_header, phq9_answers, post_reports, report, tenant_id

from careloop.services.dashboard.patients import DEFAULT_MONTHS, fitted_months
from careloop.services.db import utcnow


@pytest.mark.parametrize(
    ("age_days", "months"), [(1, 3), (56, 3), (120, 6), (200, 12), (400, 24), (2000, 24)]
)
def test_the_shortest_period_showing_everything(age_days: int, months: int) -> None:
    now = utcnow()
    assert fitted_months(now - timedelta(days=age_days), now) == months


def test_no_data_shows_a_year() -> None:
    assert fitted_months(None, utcnow()) == DEFAULT_MONTHS


def _selected(html: str) -> str:
    marker = '<strong aria-current="page">'
    return html.split(marker, 1)[1].split("</strong>", 1)[0]


def test_eight_weeks_of_scores_open_on_three_months_unless_asked(
    caller: Caller, app_client: TestClient, engine: Engine
) -> None:
    start = utcnow() - timedelta(weeks=8)
    patient = post_reports(
        caller,
        [
            report("period-1", "phq-9", start + timedelta(weeks=i), answers=phq9_answers(9, 0))
            for i in range(8)
        ],
    )
    browser = signed_in_browser(engine, tenant_id(engine, caller))
    default = app_client.get(f"/patients/{patient}", headers=cookie_header(browser))
    assert default.status_code == 200
    assert _selected(default.text) == "3 months"
    asked = app_client.get(f"/patients/{patient}?months=24", headers=cookie_header(browser))
    assert _selected(asked.text) == "24 months"
