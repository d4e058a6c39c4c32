"""Evaluating new readings and scanning for missed check-ins."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from careloop.services.alerts.models import Alert, ProcessedReading
from careloop.services.alerts.opening import apply_firings
from careloop.services.settings import Settings
from careloop.services.store.models import FhirResource
from careloop.services.store.repository import ResourceStore
from careloop.workflows.context import load_context
from careloop.workflows.rules.engine import evaluate_reading, missed_checkin, reading_from
from careloop.workflows.rules.program import DEFAULT_PROGRAM, Program, load_program

log = logging.getLogger("careloop.evaluation")
_R = FhirResource.__table__  # type: ignore[attr-defined]


def program_for(settings: Settings) -> Program:
    """The care program in force."""
    return load_program(settings.care_program or DEFAULT_PROGRAM)


def evaluate_observation(
    session: Session, settings: Settings, tenant_id: str, observation_id: str
) -> list[Alert]:
    """Evaluate one Observation once; a repeat call does nothing.

    Every rule the reading fires goes into one alert (at most one is returned), so a reading
    that crosses several rules pages once.
    """
    if session.get(ProcessedReading, observation_id) is not None:
        return []
    store = ResourceStore(session, tenant_id)
    stored = store.read("Observation", observation_id)
    if stored is None:
        log.warning("observation %s does not exist; nothing to evaluate", observation_id)
        return []
    observation = stored.as_dict()
    reference = (observation.get("subject") or {}).get("reference", "")
    alert: Alert | None = None
    fired: list[str] = []
    if reference.startswith("Patient/"):
        patient_id = reference.removeprefix("Patient/")
        ctx = load_context(store, patient_id, reading_from(observation))
        firings = evaluate_reading(program_for(settings), observation, ctx)
        alert = apply_firings(session, settings, tenant_id, patient_id, firings, observation_id)
        fired = [f.rule_id for f in firings]
    session.add(
        ProcessedReading(observation_id=observation_id, tenant_id=tenant_id, fired=" ".join(fired))
    )
    return [alert] if alert is not None else []


def scan_missed_checkins(session: Session, settings: Settings, now: datetime) -> int:
    """Open missed check-in alerts for patients whose active CarePlan expects reports."""
    program = program_for(settings)
    plans = session.execute(
        select(_R.c.tenant_id, _R.c.patient_id, func.min(_R.c.last_updated))
        .where(_R.c.resource_type == "CarePlan", _R.c.patient_id.is_not(None))
        .group_by(_R.c.tenant_id, _R.c.patient_id)
    ).all()
    opened = 0
    for tenant_id, patient_id, plan_since in plans:
        store = ResourceStore(session, tenant_id)
        ctx = load_context(store, patient_id)
        last = max((r.effective for r in ctx.history), default=None)
        firing = missed_checkin(program, last, plan_since, ctx, now)
        if firing is not None:
            apply_firings(session, settings, tenant_id, patient_id, [firing], None, now)
            opened += 1
    return opened
