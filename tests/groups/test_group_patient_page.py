"""The dashboard patient page lists the patient's group sessions with attendance."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from group_bodies import group_session, participant
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.clients import Caller
from support.clinicians import signed_in_browser

from careloop.services.tenancy.models import Tenant


def _page(app_client: TestClient, engine: Engine, caller: Caller, patient: str) -> str:
    with Session(engine) as session:
        tenant = session.exec(select(Tenant.id).where(Tenant.name == caller.tenant)).one()
    browser = signed_in_browser(engine, tenant)
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    page = app_client.get(f"/patients/{patient.removeprefix('Patient/')}", headers=cookie)
    assert page.status_code == 200, page.text
    return str(page.text)


def _post(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    response = caller.post("/v1/group-sessions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_the_patient_page_shows_attendance_newest_first(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    first = _post(
        caller,
        group_session(
            "grp-page-1", [participant("g-page", "no-show")], start="2026-11-10T17:00:00Z", end=None
        ),
    )
    second = _post(
        caller,
        group_session(
            "grp-page-2",
            [
                participant("g-page", "left-early", left_at="2026-11-24T17:30:00Z"),
                participant("g-other"),
            ],
            modality="in-person",
        ),
    )
    patient = first["participants"][0]["patient"]
    assert second["participants"][0]["patient"] == patient
    html = _page(app_client, engine, caller, patient)
    assert 'data-testid="group-sessions"' in html
    rows = html.split('data-testid="group-session-row"')[1:]
    assert len(rows) == 2
    assert 'data-attendance="left-early"' in rows[0] and "Left early" in rows[0]
    assert "2026-11-24 17:00" in rows[0] and "in-person" in rows[0]
    assert 'data-attendance="no-show"' in rows[1] and "Did not attend" in rows[1]
    assert second["participants"][1]["encounter"] not in html  # another patient's session


def test_a_patient_without_group_sessions_says_so(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    telehealth = {
        "patient": {"system": "https://app.example/patients", "value": "g-none"},
        "status": "finished",
        "start": "2026-11-24T15:00:00Z",
    }
    response = caller.post("/v1/telehealth-sessions", json=telehealth)
    assert response.status_code == 201, response.text
    html = _page(app_client, engine, caller, response.json()["patient"])
    assert "No group sessions." in html
