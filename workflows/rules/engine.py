"""Evaluating a reading against a care program: deterministic, and explaining itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from fhirpathpy import evaluate as fhirpath

from careloop.fhir.groups import attendance_of
from careloop.fhir.risks import RISK_CATEGORY_SYSTEM, RISK_PROBABILITY
from careloop.services.alerts.firing import Firing
from careloop.services.alerts.vocabulary import severity_rank
from careloop.workflows.rules.program import RISK_LEVELS, Program, Rule


@dataclass(frozen=True)
class Reading:
    """The parts of an Observation the rules look at."""

    observation_id: str
    code: str
    effective: datetime
    value: float | None
    components: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GoalTarget:
    """A patient's target from a CarePlan Goal: values above ``upper`` are out of target."""

    goal_id: str
    code: str
    upper: float
    inclusive: bool
    """True when ``upper`` itself is still within target (``<=``)."""

    def exceeded_by(self, value: float) -> bool:
        """Whether ``value`` is outside the target."""
        return value > self.upper if self.inclusive else value >= self.upper


@dataclass
class PatientContext:
    """What evaluation knows of the patient besides the new reading."""

    history: list[Reading] = field(default_factory=list)
    """Earlier readings, any code, oldest first (the new reading excluded)."""
    goals: dict[str, GoalTarget] = field(default_factory=dict)
    checkin_interval_days: float | None = None
    plan_id: str | None = None
    no_shows: list[datetime] = field(default_factory=list)
    """Starts of the patient's other missed group sessions (group-no-show rules count them)."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _value(element: dict[str, Any]) -> float | None:
    for key in ("valueInteger", "valueDecimal"):
        if key in element:
            return _number(element[key])
    if "valueQuantity" in element:
        return _number(element["valueQuantity"].get("value"))
    return None


def reading_from(observation: dict[str, Any]) -> Reading | None:
    """The Reading of an Observation, or None if it has no code or time."""
    codings = observation.get("code", {}).get("coding", [])
    effective = observation.get("effectiveDateTime") or observation.get("effectiveInstant")
    if not codings or not effective:
        return None
    components = {}
    for component in observation.get("component", []):
        for coding in component.get("code", {}).get("coding", []):
            value = _value(component)
            if value is not None and "code" in coding:
                components[coding["code"]] = value
    return Reading(
        observation_id=str(observation.get("id", "")),
        code=str(codings[0].get("code", "")),
        effective=datetime.fromisoformat(effective.replace("Z", "+00:00")),
        value=_value(observation),
        components=components,
    )


def _program_source(program: Program) -> str:
    return f"care program {program.id}"


def _tiers(rule: Rule, reading: Reading, program: Program) -> Firing | None:
    if reading.value is None:
        return None
    for tier in rule.tiers:
        if reading.value >= tier.at_least:
            return Firing(
                rule.id,
                tier.severity,
                rule.title,
                {"value": reading.value},
                {"at_least": tier.at_least},
                _program_source(program),
            )
    return None


def _tiers_with_goal(
    rule: Rule, reading: Reading, ctx: PatientContext, program: Program
) -> Firing | None:
    # A patient-specific Goal replaces the program's lowest tier: it can lower the bar (alert
    # earlier for this patient) or raise it (a patient whose chronic baseline sits above it).
    goal = ctx.goals.get(rule.code)
    if goal is None or reading.value is None:
        return _tiers(rule, reading, program)
    upper_tiers = rule.tiers[:-1]
    for tier in upper_tiers:
        if reading.value >= tier.at_least:
            return Firing(
                rule.id,
                tier.severity,
                rule.title,
                {"value": reading.value},
                {"at_least": tier.at_least},
                _program_source(program),
            )
    if goal.exceeded_by(reading.value):
        comparator = "<=" if goal.inclusive else "<"
        return Firing(
            rule.id,
            rule.override or rule.severity,
            rule.title,
            {"value": reading.value},
            {"target": f"{comparator} {goal.upper:g}"},
            f"Goal/{goal.goal_id}",
        )
    return None


def _component_above(rule: Rule, reading: Reading, program: Program) -> Firing | None:
    value = reading.components.get(rule.component)
    if value is None or value <= rule.above:
        return None
    return Firing(
        rule.id,
        rule.severity,
        rule.title,
        {rule.component: value},
        {"above": rule.above},
        _program_source(program),
    )


def _rise(rule: Rule, reading: Reading, ctx: PatientContext, program: Program) -> Firing | None:
    earlier = [r for r in ctx.history if r.code == rule.code and r.value is not None]
    if reading.value is None or not earlier:
        return None
    baseline = earlier[0]
    assert baseline.value is not None
    rise = reading.value - baseline.value
    if rise < rule.rise:
        return None
    return Firing(
        rule.id,
        rule.severity,
        rule.title,
        {
            "value": reading.value,
            "baseline": baseline.value,
            "baseline_observation": f"Observation/{baseline.observation_id}",
        },
        {"rise_at_least": rule.rise},
        _program_source(program),
    )


def _day(value: datetime) -> date:
    return value.date()  # the date where the patient was, as the app's offset says


def _streak(rule: Rule, reading: Reading, ctx: PatientContext, program: Program) -> Firing | None:
    if reading.value is None or reading.value > rule.at_most:
        return None
    latest_per_day: dict[date, float] = {}
    for r in [*ctx.history, reading]:
        if r.code == rule.code and r.value is not None:
            latest_per_day[_day(r.effective)] = r.value  # history is oldest first
    today = _day(reading.effective)
    days = [today - timedelta(days=n) for n in range(rule.days)]
    values = [latest_per_day.get(d) for d in days]
    if any(v is None or v > rule.at_most for v in values):
        return None
    return Firing(
        rule.id,
        rule.severity,
        rule.title,
        {"values": {d.isoformat(): v for d, v in zip(days, values, strict=True)}},
        {"at_most": rule.at_most, "days": rule.days},
        _program_source(program),
    )


def _fhirpath(rule: Rule, observation: dict[str, Any], program: Program) -> Firing | None:
    result = fhirpath(observation, rule.expression)
    if not result or result == [False]:
        return None
    return Firing(
        rule.id,
        rule.severity,
        rule.title,
        {"result": result[:5]},
        {"expression": rule.expression},
        _program_source(program),
    )


def _code_in(concept: Any, system: str) -> str | None:
    if not isinstance(concept, dict):
        return None
    for item in concept.get("coding") or []:
        if isinstance(item, dict) and item.get("system") == system:
            return str(item.get("code", ""))
    return None


def risk_signal_from(assessment: dict[str, Any]) -> tuple[str, str] | None:
    """The (category, level) of a careloop risk-signal RiskAssessment, or None."""
    category = _code_in(assessment.get("code"), RISK_CATEGORY_SYSTEM)
    predictions = assessment.get("prediction") or [{}]
    first = predictions[0] if isinstance(predictions[0], dict) else {}
    level = _code_in(first.get("qualitativeRisk"), RISK_PROBABILITY)
    if category is None or level not in RISK_LEVELS:
        return None
    return category, str(level)


def _risk_signal(rule: Rule, signal: tuple[str, str], program: Program) -> Firing | None:
    category, level = signal
    if category not in rule.categories:
        return None
    rank = RISK_LEVELS.index(level) + 1
    for tier in rule.tiers:
        if rank >= tier.at_least:
            return Firing(
                rule.id,
                tier.severity,
                rule.title,
                {"category": category, "level": level},
                {"at_least": RISK_LEVELS[int(tier.at_least) - 1]},
                _program_source(program),
            )
    return None


def _evaluate_risk(program: Program, assessment: dict[str, Any]) -> list[Firing]:
    signal = risk_signal_from(assessment)
    if signal is None:
        return []
    firings = [
        f
        for f in (
            _risk_signal(r, signal, program) for r in program.rules if r.kind == "risk-signal"
        )
        if f is not None
    ]
    return sorted(firings, key=lambda f: -severity_rank(f.severity))


def no_show_start(encounter: dict[str, Any]) -> datetime | None:
    """When a participant's missed group session was to start, or None if it is no no-show."""
    if encounter.get("resourceType") != "Encounter" or attendance_of(encounter) != "no-show":
        return None
    start = (encounter.get("period") or {}).get("start")
    try:
        return datetime.fromisoformat(str(start))
    except ValueError:
        return None


def _group_no_show(
    rule: Rule, start: datetime, ctx: PatientContext, program: Program
) -> Firing | None:
    since = start - timedelta(days=rule.days)
    earlier = sorted(d for d in ctx.no_shows if since <= d <= start)
    missed = len(earlier) + 1
    if missed < rule.count:
        return None
    return Firing(
        rule.id,
        rule.severity,
        rule.title,
        {"missed_sessions": missed, "session_start": start.isoformat()},
        {"count": rule.count, "days": rule.days},
        _program_source(program),
    )


def _evaluate_encounter(
    program: Program, encounter: dict[str, Any], ctx: PatientContext
) -> list[Firing]:
    start = no_show_start(encounter)
    if start is None:
        return []
    firings = [
        f
        for f in (
            _group_no_show(r, start, ctx, program)
            for r in program.rules
            if r.kind == "group-no-show"
        )
        if f is not None
    ]
    return sorted(firings, key=lambda f: -severity_rank(f.severity))


def evaluate_reading(
    program: Program, observation: dict[str, Any], ctx: PatientContext
) -> list[Firing]:
    """The rules ``observation`` fires, most severe first; the same input gives the same output.

    A RiskAssessment (a chatbot or AI risk signal) is judged by the risk-signal rules alone; an
    Encounter (a participant's missed group session) by the group-no-show rules alone.
    """
    if observation.get("resourceType") == "RiskAssessment":
        return _evaluate_risk(program, observation)
    if observation.get("resourceType") == "Encounter":
        return _evaluate_encounter(program, observation, ctx)
    reading = reading_from(observation)
    if reading is None:
        return []
    firings: list[Firing] = []
    for rule in program.rules:
        firing: Firing | None = None
        if rule.kind in ("risk-signal", "group-no-show"):
            continue
        if rule.kind == "fhirpath":
            firing = _fhirpath(rule, observation, program)
        elif rule.code != reading.code:
            continue
        elif rule.kind == "component-above":
            firing = _component_above(rule, reading, program)
        elif rule.kind == "value-tiers":
            firing = _tiers_with_goal(rule, reading, ctx, program)
        elif rule.kind == "rise-from-baseline":
            firing = _rise(rule, reading, ctx, program)
        elif rule.kind == "consecutive-days-at-most":
            firing = _streak(rule, reading, ctx, program)
        if firing is not None:
            firings.append(firing)
    return sorted(firings, key=lambda f: -severity_rank(f.severity))


def missed_checkin(
    program: Program,
    last_report: datetime | None,
    since: datetime,
    ctx: PatientContext,
    now: datetime,
) -> Firing | None:
    """The missed check-in firing for a patient whose plan expects reports, if overdue."""
    rule = next((r for r in program.rules if r.kind == "missed-checkin"), None)
    if rule is None or ctx.checkin_interval_days is None:
        return None
    allowed = max(rule.min_days, ctx.checkin_interval_days * rule.grace_factor)
    reference = last_report or since
    silent_days = (now - reference).total_seconds() / 86400
    if silent_days <= allowed:
        return None
    return Firing(
        rule.id,
        rule.severity,
        rule.title,
        {
            "days_without_report": round(silent_days, 1),
            "last_report": last_report.isoformat() if last_report else None,
        },
        {"expected_every_days": ctx.checkin_interval_days, "allowed_days": allowed},
        f"CarePlan/{ctx.plan_id}" if ctx.plan_id else _program_source(program),
    )
