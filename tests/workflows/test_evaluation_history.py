"""The bounded context judges every reading as the patient's whole history did.

A synthetic patient's readings (offsets from -11:00 to +14:00, readings at the same instant,
readings stored after later ones) are each evaluated against the context the store gives
(``load_context``) and against one built from every earlier reading, as evaluation did before
it read only what the rules look at. The firings must be the same; the missed check-in scan
measures silence from the newest reading.
"""

from __future__ import annotations

import json
import random
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select
from support.patient_data import SYSTEM, answers_for

from careloop.services.alerts.models import Alert
from careloop.services.auth.scopes import Grant, parse_scopes
from careloop.services.auth.tokens import Principal
from careloop.services.db import utcnow
from careloop.services.fhirapi.writes import create_managed
from careloop.services.reports.schemas import SymptomReportIn
from careloop.services.reports.service import ingest_reports
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore
from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope
from careloop.workflows.context import last_report, load_context
from careloop.workflows.evaluation import scan_missed_checkins
from careloop.workflows.rules.engine import PatientContext, evaluate_reading, reading_from
from careloop.workflows.rules.program import load_program

SCOPE = "system/*.cruds"
PROGRAM = load_program()
OFFSETS = [timezone(timedelta(hours=h, minutes=m)) for h, m in ((-11, 0), (-5, 0), (0, 0),
           (5, 30), (14, 0))]  # fmt: skip
START = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


def _reports(patient: str, rng: random.Random, count: int) -> list[SymptomReportIn]:
    reports = []
    times: list[datetime] = []
    for n in range(count):
        if times and rng.random() < 0.15:
            when = rng.choice(times)  # another reading at the same instant
        else:
            when = START + timedelta(hours=rng.randrange(0, 24 * 40, 5))
        times.append(when)
        instrument = rng.choice(["mood", "mood", "mood", "phq-9", "gad-7"])
        body: dict[str, Any] = {
            "patient": {"system": SYSTEM, "value": patient},
            "instrument": instrument,
            "effective": when.astimezone(rng.choice(OFFSETS)),
            "app_report_id": f"r-{n}",
        }
        if instrument == "mood":
            body["value"] = rng.choice([0, 1, 2, 2, 3, 6])
        else:
            items = 9 if instrument == "phq-9" else 7
            body["answers"] = answers_for(rng.randrange(0, 3 * items - 3), items)
        reports.append(SymptomReportIn.model_validate(body))
    for n, total in enumerate((2, 6, 4, 0)):  # the first PHQ-9s, at one instant, stored last
        reports.append(SymptomReportIn.model_validate({
            "patient": {"system": SYSTEM, "value": patient}, "instrument": "phq-9",
            "effective": START - timedelta(days=1), "app_report_id": f"first-{n}",
            "answers": answers_for(total, 9),
        }))  # fmt: skip
    return reports


def _full_context(store: ResourceStore, patient_id: str, current: Any) -> PatientContext:
    """Every earlier reading (any code), as evaluation read them before."""
    ctx = PatientContext()
    for stored in store.for_patient("Observation", patient_id):
        reading = reading_from(stored.as_dict())
        if reading is None or reading.observation_id == current.observation_id:
            continue
        if reading.effective <= current.effective:
            ctx.history.append(reading)
    ctx.history.sort(key=lambda r: (r.effective, r.observation_id))
    return ctx


def test_bounded_context_fires_what_the_whole_history_fired(engine: Engine) -> None:
    with session_scope(engine) as session:
        client = create_client(session, "history", SCOPE, f"history-{secrets.token_hex(4)}")
    principal = Principal(
        client.client_id, client.tenant_id, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0
    )
    rng = random.Random(20261201)
    with session_scope(engine) as session:
        outcomes = ingest_reports(session, principal, _reports("history-1", rng, 160))
    assert all(o.status == 201 for o in outcomes)
    patient_id = str(outcomes[0].patient).removeprefix("Patient/")
    fired = set()
    with session_scope(engine) as session:
        store = ResourceStore(session, principal.tenant_id)
        observations = [s.as_dict() for s in store.for_patient("Observation", patient_id)]
        for observation in observations:
            current = reading_from(observation)
            assert current is not None
            bounded = load_context(session, principal.tenant_id, patient_id, PROGRAM, current)
            whole = _full_context(store, patient_id, current)
            expected = evaluate_reading(PROGRAM, observation, whole)
            assert evaluate_reading(PROGRAM, observation, bounded) == expected, observation["id"]
            fired |= {f.rule_id for f in expected}
        newest = max(r.effective for r in map(reading_from, observations) if r is not None)
        assert last_report(session, principal.tenant_id, patient_id) == newest
    # The history exercises the rules that look back.
    assert {"phq9-worsening", "mood-low-streak"} <= fired


def _daily_plan(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": f"Patient/{patient_id}"},
        "activity": [{"detail": {
            "status": "in-progress",
            "scheduledTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        }}],
    }  # fmt: skip


def test_the_scan_measures_silence_from_each_patients_newest_reading(
    engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        client = create_client(session, "scan", SCOPE, f"scan-{secrets.token_hex(4)}")
    principal = Principal(
        client.client_id, client.tenant_id, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0
    )
    now = utcnow()
    silent_since = (now - timedelta(days=5)).astimezone(OFFSETS[-1])  # +14:00
    reports = [
        SymptomReportIn.model_validate(
            {
                "patient": {"system": SYSTEM, "value": patient},
                "instrument": "mood",
                "effective": when,
                "value": 5,
            }
        )  # fmt: skip
        for patient, when in (
            ("scan-silent", now - timedelta(days=9)),
            ("scan-silent", silent_since),
            ("scan-silent", now - timedelta(days=7)),  # stored last, made earlier
            ("scan-reporting", now - timedelta(days=9)),
            ("scan-reporting", now - timedelta(hours=1)),
        )
    ]
    with session_scope(engine) as session:
        outcomes = ingest_reports(session, principal, reports)
        patients = {o.patient for o in outcomes}
        for patient in sorted(str(p).removeprefix("Patient/") for p in patients):
            create_managed(session, principal, "CarePlan", _daily_plan(patient), None)
    with session_scope(engine) as session:
        scan_missed_checkins(session, settings, now)
    with session_scope(engine) as session:
        alerts = session.exec(
            select(Alert).where(Alert.tenant_id == principal.tenant_id)  # type: ignore[arg-type]
        ).all()
        [alert] = alerts
        assert alert.patient_id == str(outcomes[0].patient).removeprefix("Patient/")
        assert alert.rule_id == "missed-checkin"
        values = json.loads(alert.explanation)["values"]
        assert datetime.fromisoformat(values["last_report"]) == silent_since
        assert values["days_without_report"] == 5.0
