"""Evaluating new readings and scanning for missed check-ins."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import apply_firing
from careloop.services.alerts.vocabulary import Severity
from careloop.services.common.task_names import TaskName
from careloop.services.settings import Settings, get_settings
from careloop.services.store.models import FhirResource
from careloop.services.store.repository import ResourceStore
from careloop.workflows.context import load_context
from careloop.workflows.models import ProcessedReading
from careloop.workflows.outbox import enqueue
from careloop.workflows.rules.engine import (
    PatientContext,
    evaluate_reading,
    missed_checkin,
    reading_from,
)
from careloop.workflows.rules.program import DEFAULT_PROGRAM, Program, load_program

log = logging.getLogger("careloop.evaluation")
_R = FhirResource.__table__  # type: ignore[attr-defined]


def program_for(settings: Settings) -> Program:
    """The care program in force."""
    return load_program(settings.care_program or DEFAULT_PROGRAM)


def may_be_critical(observation: dict[str, Any]) -> bool:
    """Whether a reading fires a critical rule on its own (no history needed to know it)."""
    firings = evaluate_reading(program_for(get_settings()), observation, PatientContext())
    return any(f.severity == Severity.CRITICAL for f in firings)


def readings_created(session: Session, tenant_id: str, observations: list[dict[str, Any]]) -> None:
    """Schedule evaluation of new Observations, in the caller's transaction.

    A reading that is critical by itself (PHQ-9 item 9 above 0) goes to the urgent queue, so it
    never waits behind routine readings.
    """
    for observation in observations:
        payload = {"tenant_id": tenant_id, "observation_id": observation["id"]}
        urgent = may_be_critical(observation)
        task = TaskName.OBSERVATION_EVALUATE_URGENT if urgent else TaskName.OBSERVATION_EVALUATE
        enqueue(session, tenant_id, task, payload)


def evaluate_observation(
    session: Session, settings: Settings, tenant_id: str, observation_id: str
) -> list[Alert]:
    """Evaluate one Observation once; a repeat call does nothing."""
    if session.get(ProcessedReading, observation_id) is not None:
        return []
    store = ResourceStore(session, tenant_id)
    stored = store.read("Observation", observation_id)
    if stored is None:
        log.warning("observation %s does not exist; nothing to evaluate", observation_id)
        return []
    observation = stored.as_dict()
    reference = (observation.get("subject") or {}).get("reference", "")
    alerts: list[Alert] = []
    fired: list[str] = []
    if reference.startswith("Patient/"):
        patient_id = reference.removeprefix("Patient/")
        ctx = load_context(store, patient_id, reading_from(observation))
        for firing in evaluate_reading(program_for(settings), observation, ctx):
            alerts.append(
                apply_firing(session, settings, tenant_id, patient_id, firing, observation_id)
            )
            fired.append(firing.rule_id)
    session.add(
        ProcessedReading(observation_id=observation_id, tenant_id=tenant_id, fired=" ".join(fired))
    )
    return alerts


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
            apply_firing(session, settings, tenant_id, patient_id, firing, None, now)
            opened += 1
    return opened
