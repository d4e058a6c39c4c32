"""Synthetic patients with score series, plans and goals, posted through the real API."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from careloop.services.alerts.firing import Firing
from careloop.services.alerts.opening import apply_firings
from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import session_scope
from support.clients import Caller
from support.clinicians import SignedInBrowser

SYSTEM = "https://app.example/patients"


def answers_for(total: int, items: int, item9: int = 0) -> list[int]:
    """Item scores (0..3) adding up to ``total``; with ``item9`` the last item is fixed."""
    fixed = [item9] if item9 else []
    free = items - len(fixed)
    rest = total - item9
    assert 0 <= rest <= 3 * free, "total out of range"
    scores = [min(3, max(0, rest - 3 * i)) for i in range(free)]
    return scores + fixed if fixed else scores + [0] * (items - len(scores))


def phq9_answers(total: int, item9: int = 0) -> list[int]:
    """PHQ-9 answers with this total (item 9 last)."""
    return answers_for(total, 9, item9)


def gad7_answers(total: int) -> list[int]:
    """GAD-7 answers with this total."""
    return answers_for(total, 7)


def report(
    patient: str,
    instrument: str,
    when: datetime | str,
    *,
    answers: list[int] | None = None,
    value: float | None = None,
) -> dict[str, Any]:
    """One synthetic symptom report body."""
    body: dict[str, Any] = {
        "patient": {"system": SYSTEM, "value": patient},
        "instrument": instrument,
        "effective": when if isinstance(when, str) else when.isoformat(),
    }
    if answers is not None:
        body["answers"] = answers
    if value is not None:
        body["value"] = value
    return body


def post_reports(caller: Caller, reports: list[dict[str, Any]]) -> str:
    """Post reports (in batches of 500) and return the careloop patient id of the first."""
    patient = ""
    for start in range(0, len(reports), 500):
        response = caller.post("/v1/symptom-reports/batch", json=reports[start : start + 500])
        assert response.status_code in (200, 201, 207), response.text
        results = response.json()["results"]
        patient = patient or next(r["patient"] for r in results if r.get("patient"))
    return patient.removeprefix("Patient/")


def post_fhir(caller: Caller, resource: dict[str, Any]) -> dict[str, Any]:
    """Create a FHIR resource through the FHIR API."""
    response = caller.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def care_plan(patient_id: str, start: str, goal_ids: tuple[str, ...] = ()) -> dict[str, Any]:
    """An active CarePlan starting at ``start``, weekly check-ins."""
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": start},
        "goal": [{"reference": f"Goal/{g}"} for g in goal_ids],
    }


def goal(patient_id: str, code: str, high: int) -> dict[str, Any]:
    """An active Goal keeping the score ``code`` at or below ``high``."""
    return {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": f"Score at or below {high}"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "target": [
            {
                "measure": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "detailRange": {"high": {"value": high}},
            }
        ],
    }


def tenant_id(engine: Engine, caller: Caller) -> str:
    """The id of the caller's tenant (``caller.tenant`` is its name)."""
    with Session(engine) as session:
        tenant = session.exec(select(Tenant).where(Tenant.name == caller.tenant)).one()
        return tenant.id


def open_alert(
    engine: Engine,
    settings: Settings,
    tenant: str,
    patient_id: str,
    rule_id: str,
    severity: str,
    when: datetime | None = None,
) -> str:
    """Open an alert through the alert lifecycle (as the rules would); its id."""
    firing = Firing(rule_id, severity, f"Synthetic {rule_id}", {"value": 1}, {}, "test program")
    with session_scope(engine) as session:
        alert = apply_firings(session, settings, tenant, patient_id, [firing], None, when)
        assert alert is not None
        return alert.id


def session_in(patient: str, start: datetime) -> dict[str, Any]:
    """A finished video session body for ``/v1/telehealth-sessions``."""
    return {
        "patient": {"system": SYSTEM, "value": patient},
        "status": "finished",
        "modality": "video",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
    }


def cookie_header(browser: SignedInBrowser) -> dict[str, str]:
    """The request header carrying a signed-in browser's session cookie."""
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
