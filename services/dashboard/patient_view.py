"""What the patient page shows, read with bounded queries over one time window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlmodel import Session, select

from careloop.fhir.terminology import LOINC, PHQ9_ITEM9_CODE, RATING_INSTRUMENTS, SCORED_INSTRUMENTS
from careloop.services.alerts.models import Alert
from careloop.services.alerts.vocabulary import AlertStatus, severity_rank
from careloop.services.common.fhirtime import FhirTimeError, parse_fhir_datetime_range
from careloop.services.dashboard.alert_view import HistoryEntry, alert_histories
from careloop.services.measures.core import INSTRUMENTS, Summary, summarise
from careloop.services.measures.series import (
    Reading,
    observations,
    patient_resources,
    readings,
    series_by_code,
    treatment_start,
)
from careloop.services.measures.service import instrument_summary, score_of

MAX_SCORES = 200
"""Questionnaires per instrument in one window (two years of weekly ones is 104)."""
MAX_DAILY = 800
"""Daily ratings per kind in one window (two years is 730)."""
MAX_ENCOUNTERS = 200
MAX_ALERTS = 100
ITEM_ROWS = 10
"""PHQ-9s in the item table."""
MAX_WINDOW = 4000
"""Observations of one window looked through at most (two years of the above is about 2,400)."""
DAILY = ("mood", "sleep-duration", "sleep-quality")
_GOAL_STATES = ("active", "accepted", "planned")


@dataclass(frozen=True)
class Visit:
    """A telehealth session (Encounter) on the time axis."""

    when: datetime
    status: str
    text: str


@dataclass
class PatientView:
    """Everything the patient page renders."""

    patient_id: str
    start: datetime
    end: datetime
    scores: dict[str, list[Reading]] = field(default_factory=dict)
    daily: dict[str, list[Reading]] = field(default_factory=dict)
    goals: dict[str, list[float]] = field(default_factory=dict)
    """Upper targets by LOINC code."""
    encounters: list[Visit] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    """Newest first, the window's and every unresolved one."""
    summaries: dict[str, Summary] = field(default_factory=dict)
    history: dict[str, list[HistoryEntry]] = field(default_factory=dict)
    """Each alert's events (by alert id), who did what, as the alert page lists them."""
    names: dict[str, str] = field(default_factory=dict)
    """Readable names of who acted on the alerts (``Practitioner/..`` to a name)."""

    @property
    def open_alerts(self) -> list[Alert]:
        """Unresolved alerts, most severe then oldest first."""
        unresolved = [a for a in self.alerts if a.status != AlertStatus.RESOLVED]
        return sorted(unresolved, key=lambda a: (-severity_rank(a.severity), a.opened_at))

    @property
    def item_rows(self) -> list[Reading]:
        """The latest PHQ-9s, newest first, for the item table."""
        return self.scores.get("phq-9", [])[-ITEM_ROWS:][::-1]

    @property
    def item9_positive(self) -> list[Reading]:
        """PHQ-9s in the window whose item 9 was above 0."""
        return [r for r in self.scores.get("phq-9", []) if r.components.get(PHQ9_ITEM9_CODE, 0) > 0]


def goal_targets(goal: dict[str, Any]) -> list[tuple[str, float]]:
    """(LOINC code, upper value) of each target of a Goal (``detailRange.high`` or a
    ``detailQuantity`` with ``<``/``<=``), as the care program reads them."""
    targets: list[tuple[str, float]] = []
    for target in goal.get("target") or []:
        if not isinstance(target, dict):
            continue
        upper: Any = None
        if isinstance(target.get("detailRange"), dict):
            upper = (target["detailRange"].get("high") or {}).get("value")
        elif isinstance(target.get("detailQuantity"), dict):
            quantity = target["detailQuantity"]
            if quantity.get("comparator", "<=") in ("<", "<="):
                upper = quantity.get("value")
        if not isinstance(upper, int | float) or isinstance(upper, bool):
            continue
        codings = (target.get("measure") or {}).get("coding") or []
        targets.extend((c["code"], float(upper)) for c in codings if isinstance(c.get("code"), str))
    return targets


def _encounter(resource: dict[str, Any]) -> Visit | None:
    start = (resource.get("period") or {}).get("start")
    if not isinstance(start, str):
        return None
    try:
        when = parse_fhir_datetime_range(start)[0]
    except FhirTimeError:
        return None
    kinds = [t.get("text") for t in resource.get("type") or [] if isinstance(t, dict)]
    text = next((k for k in kinds if isinstance(k, str)), "Telehealth session")
    return Visit(when, str(resource.get("status", "")), text)


def _alerts(session: Session, tenant_id: str, patient_id: str, since: datetime) -> list[Alert]:
    base = select(Alert).where(Alert.tenant_id == tenant_id, Alert.patient_id == patient_id)
    recent = session.exec(
        base.where(Alert.opened_at >= since)
        .order_by(Alert.opened_at.desc())  # type: ignore[attr-defined]
        .limit(MAX_ALERTS)
    ).all()
    unresolved = session.exec(
        base.where(Alert.status != AlertStatus.RESOLVED).limit(MAX_ALERTS)
    ).all()
    by_id = {a.id: a for a in [*recent, *unresolved]}
    return sorted(by_id.values(), key=lambda a: a.opened_at, reverse=True)


def load_view(
    session: Session, tenant_id: str, patient_id: str, now: datetime, months: int
) -> PatientView:
    """The patient page's data for the ``months`` before ``now`` (every query bounded)."""
    start = now - timedelta(days=round(months * 30.44))
    view = PatientView(patient_id, start, now)
    wanted: dict[tuple[str, str], int] = {}
    for key in INSTRUMENTS:
        wanted[(LOINC, SCORED_INSTRUMENTS[key].total.code)] = MAX_SCORES
    for key in DAILY:
        spec = RATING_INSTRUMENTS[key]
        wanted[(spec.system, spec.code)] = MAX_DAILY
    # One pass over the window's Observations, newest first, sorted into series.
    found = series_by_code(
        observations(session, tenant_id, patient_id, since=start, scan=MAX_WINDOW), wanted
    )
    for key in INSTRUMENTS:
        view.scores[key] = found[(LOINC, SCORED_INSTRUMENTS[key].total.code)][::-1]
    for key in DAILY:
        spec = RATING_INSTRUMENTS[key]
        view.daily[key] = found[(spec.system, spec.code)][::-1]
    for goal in patient_resources(session, tenant_id, "Goal", patient_id):
        if goal.get("lifecycleStatus") in _GOAL_STATES:
            for code, upper in goal_targets(goal):
                view.goals.setdefault(code, []).append(upper)
    encounters = patient_resources(
        session, tenant_id, "Encounter", patient_id, since=start, limit=MAX_ENCOUNTERS
    )
    view.encounters = [e for e in map(_encounter, encounters) if e is not None]
    view.alerts = _alerts(session, tenant_id, patient_id, start)
    view.history, view.names = alert_histories(session, tenant_id, view.alerts, now)
    plan_start = treatment_start(patient_resources(session, tenant_id, "CarePlan", patient_id))
    for key, instrument in INSTRUMENTS.items():
        scores = [s for s in map(score_of, view.scores[key][-2:]) if s is not None]
        if len(scores) < 2:  # fewer than two in the window: look further back
            view.summaries[key] = instrument_summary(
                session, tenant_id, patient_id, instrument, plan_start
            )
            continue
        first = readings(
            session, tenant_id, patient_id, instrument.code, since=plan_start, limit=1, oldest=True
        )
        baseline = score_of(first[0]) if first else None
        view.summaries[key] = summarise(instrument, baseline, scores, plan_start)
    return view


def alert_title(alert: Alert) -> str:
    """The rule's title from the alert's explanation (no free text)."""
    try:
        explanation = orjson.loads(alert.explanation)
    except orjson.JSONDecodeError:
        return alert.rule_id
    title = explanation.get("title") if isinstance(explanation, dict) else None
    return str(title) if title else alert.rule_id
