"""Evaluating new readings and scanning for missed check-ins."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlmodel import Session

from careloop.services.alerts.models import Alert, ProcessedReading
from careloop.services.alerts.opening import apply_firings
from careloop.services.settings import Settings
from careloop.services.store.models import FhirResource
from careloop.services.store.repository import ResourceStore
from careloop.workflows.context import checkin_plan, last_report, load_context
from careloop.workflows.rules.engine import (
    PatientContext,
    evaluate_reading,
    missed_checkin,
    no_show_start,
    reading_from,
)
from careloop.workflows.rules.program import DEFAULT_PROGRAM, Program, load_program

log = logging.getLogger("careloop.evaluation")
_R = FhirResource.__table__  # type: ignore[attr-defined]


def program_for(settings: Settings) -> Program:
    """The care program in force."""
    return load_program(settings.care_program or DEFAULT_PROGRAM)


def _other_no_shows(store: ResourceStore, patient_id: str, encounter_id: str) -> list[datetime]:
    """The starts of the patient's missed group sessions other than ``encounter_id``."""
    starts = (
        no_show_start(e.as_dict())
        for e in store.for_patient("Encounter", patient_id)
        if e.id != encounter_id
    )
    return [s for s in starts if s is not None]


def evaluate_observation(
    session: Session, settings: Settings, tenant_id: str, observation_id: str
) -> list[Alert]:
    """Evaluate one Observation once; a repeat call does nothing.

    ``observation_id`` is an Observation's id, or a ``RiskAssessment/<id>`` reference (a risk
    signal, judged by the risk-signal rules; the alert's evidence is that reference) or an
    ``Encounter/<id>`` one (a participant's missed group session, the group-no-show rules). Every
    rule the reading fires goes into one alert (at most one is returned), so a reading that
    crosses several rules pages once.
    """
    if session.get(ProcessedReading, observation_id) is not None:
        return []
    store = ResourceStore(session, tenant_id)
    rtype, _, rid = observation_id.rpartition("/")
    stored = store.read(rtype or "Observation", rid)
    if stored is None:
        log.warning("reading %s does not exist; nothing to evaluate", observation_id)
        return []
    observation = stored.as_dict()
    reference = (observation.get("subject") or {}).get("reference", "")
    alert: Alert | None = None
    fired: list[str] = []
    if reference.startswith("Patient/"):
        patient_id = reference.removeprefix("Patient/")
        program = program_for(settings)
        current = reading_from(observation) if not rtype else None
        if current is not None:
            ctx = load_context(session, tenant_id, patient_id, program, current)
        elif rtype == "Encounter":
            ctx = PatientContext(no_shows=_other_no_shows(store, patient_id, rid))
        else:
            ctx = PatientContext()  # no code or time (or a risk signal): nothing to load
        firings = evaluate_reading(program, observation, ctx)
        alert = apply_firings(session, settings, tenant_id, patient_id, firings, observation_id)
        fired = [f.rule_id for f in firings]
    session.add(
        ProcessedReading(observation_id=observation_id, tenant_id=tenant_id, fired=" ".join(fired))
    )
    return [alert] if alert is not None else []


def _plans(session: Session) -> dict[tuple[str, str], tuple[datetime, list[dict[str, Any]]]]:
    """Every patient's CarePlans (oldest date first) and the earliest of their last updates."""
    rows = session.execute(
        select(_R.c.tenant_id, _R.c.patient_id, _R.c.last_updated, _R.c.content)
        .where(_R.c.resource_type == "CarePlan", _R.c.patient_id.is_not(None))
        .order_by(_R.c.tenant_id, _R.c.patient_id, _R.c.date_lo, _R.c.seq)
    ).all()
    plans: dict[tuple[str, str], tuple[datetime, list[dict[str, Any]]]] = {}
    for row in rows:
        key = (row.tenant_id, row.patient_id)
        since, contents = plans.get(key, (row.last_updated, []))
        contents.append(orjson.loads(row.content))
        plans[key] = (min(since, row.last_updated), contents)
    return plans


def _newest_observations(session: Session) -> dict[tuple[str, str], str | None]:
    """The newest Observation (by date) of every patient with a CarePlan: one statement, one
    indexed row a patient."""
    plan = _R.alias("plan")
    observation = _R.alias("observation")
    newest = (
        select(observation.c.content)
        .where(
            observation.c.tenant_id == plan.c.tenant_id,
            observation.c.resource_type == "Observation",
            observation.c.patient_id == plan.c.patient_id,
            observation.c.date_lo.is_not(None),
        )
        .order_by(observation.c.date_lo.desc(), observation.c.seq.desc())
        .limit(1)
        .correlate(plan)
        .scalar_subquery()
    )
    rows = session.execute(
        select(plan.c.tenant_id, plan.c.patient_id, newest)
        .where(plan.c.resource_type == "CarePlan", plan.c.patient_id.is_not(None))
        .group_by(plan.c.tenant_id, plan.c.patient_id)
    ).all()
    return {(tenant_id, patient_id): content for tenant_id, patient_id, content in rows}


def _last_report(
    session: Session, tenant_id: str, patient_id: str, newest: str | None
) -> datetime | None:
    if newest is None:
        return None
    reading = reading_from(orjson.loads(newest))
    if reading is not None:
        return reading.effective
    return last_report(session, tenant_id, patient_id)  # the newest is no reading: look further


def scan_missed_checkins(session: Session, settings: Settings, now: datetime) -> int:
    """Open missed check-in alerts for patients whose active CarePlan expects reports.

    Two statements for all patients (their CarePlans; their newest Observations, one indexed
    row each), whatever their histories.
    """
    program = program_for(settings)
    plans = _plans(session)
    newest = _newest_observations(session)
    opened = 0
    for (tenant_id, patient_id), (plan_since, contents) in plans.items():
        interval, plan_id = checkin_plan(contents)
        if interval is None:
            continue
        ctx = PatientContext(checkin_interval_days=interval, plan_id=plan_id)
        last = _last_report(session, tenant_id, patient_id, newest.get((tenant_id, patient_id)))
        firing = missed_checkin(program, last, plan_since, ctx, now)
        if firing is not None:
            apply_firings(session, settings, tenant_id, patient_id, [firing], None, now)
            opened += 1
    return opened
