"""Loading what rules need about a patient: earlier readings, Goals and check-in frequency.

Every read is bounded by the rules, never by the patient's history: a rise is measured from
the first reading of its code (the baseline, one indexed row), a streak looks at the readings of
its few days, and a missed check-in at the newest report. Judging a reading after two years of
daily reports costs what it costs after a week.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlmodel import Session

from careloop.services.measures.series import observations
from careloop.services.store.repository import ResourceStore
from careloop.workflows.rules.engine import GoalTarget, PatientContext, Reading, reading_from
from careloop.workflows.rules.program import Program, Rule

_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1, "wk": 7, "mo": 30, "a": 365}


def _goal_targets(goal: dict[str, Any]) -> list[GoalTarget]:
    targets: list[GoalTarget] = []
    for target in goal.get("target", []):
        codings = (target.get("measure") or {}).get("coding", [])
        upper: float | None = None
        inclusive = True
        if "detailRange" in target and "high" in target["detailRange"]:
            upper = float(target["detailRange"]["high"]["value"])
        elif "detailQuantity" in target:
            quantity = target["detailQuantity"]
            comparator = quantity.get("comparator", "<=")
            if comparator in ("<", "<="):
                upper = float(quantity["value"])
                inclusive = comparator == "<="
        if upper is None:
            continue
        targets.extend(
            GoalTarget(str(goal["id"]), c["code"], upper, inclusive) for c in codings if "code" in c
        )
    return targets


def goal_targets(goals: Iterable[dict[str, Any]]) -> dict[str, GoalTarget]:
    """The targets of the active Goals by code (a later Goal's target replaces an earlier one)."""
    found: dict[str, GoalTarget] = {}
    for goal in goals:
        if goal.get("lifecycleStatus") in ("active", "accepted", "planned"):
            for target in _goal_targets(goal):
                found[target.code] = target
    return found


def _interval_days(plan: dict[str, Any]) -> float | None:
    intervals = []
    for activity in plan.get("activity", []):
        detail = activity.get("detail") or {}
        if detail.get("status") in ("cancelled", "completed", "stopped", "entered-in-error"):
            continue
        repeat = (detail.get("scheduledTiming") or {}).get("repeat") or {}
        if "period" in repeat and repeat.get("periodUnit") in _DAYS:
            frequency = repeat.get("frequency", 1) or 1
            intervals.append(float(repeat["period"]) * _DAYS[repeat["periodUnit"]] / frequency)
    return min(intervals) if intervals else None


def checkin_plan(plans: Iterable[dict[str, Any]]) -> tuple[float | None, str | None]:
    """The shortest check-in interval (days) of the active CarePlans and the plan setting it
    (the first of equals, in the order given)."""
    interval: float | None = None
    plan_id: str | None = None
    for plan in plans:
        if plan.get("status") != "active":
            continue
        days = _interval_days(plan)
        if days is not None and (interval is None or days < interval):
            interval, plan_id = days, str(plan["id"])
    return interval, plan_id


def _until(current: Reading) -> datetime:
    """The store's date of ``current`` (a time without an offset is UTC there)."""
    effective = current.effective
    return effective if effective.tzinfo is not None else effective.replace(tzinfo=UTC)


def _earlier(
    found: Iterator[tuple[str, datetime, dict[str, Any]]], current: Reading, code: str
) -> Iterator[tuple[datetime, Reading]]:
    """(store date, reading) of the readings found that a rule on ``code`` looks at: that code
    first, a value, and not after ``current`` (nor ``current`` itself)."""
    for _rid, when, resource in found:
        reading = reading_from(resource)
        if reading is None or reading.code != code or reading.value is None:
            continue
        if (
            reading.observation_id == current.observation_id
            or reading.effective > current.effective
        ):
            continue
        yield when, reading


def _baseline(
    session: Session, tenant_id: str, patient_id: str, code: str, current: Reading
) -> list[Reading]:
    """The patient's first readings of ``code`` (all of those at the first time)."""
    found = observations(
        session, tenant_id, patient_id, until=_until(current), code=code, oldest=True, first_page=2
    )
    first: datetime | None = None
    result: list[Reading] = []
    for when, reading in _earlier(found, current, code):
        if first is not None and when > first:
            break
        first = when
        result.append(reading)
    return result


def _window(
    session: Session, tenant_id: str, patient_id: str, rule: Rule, current: Reading
) -> list[Reading]:
    """The readings of ``rule.code`` on the streak's days (dates where the patient was)."""
    first_day = current.effective.date() - timedelta(days=rule.days - 1)
    # A reading on that date (at its own offset, under a day) was made at most a day before
    # the date began in UTC.
    since = datetime.combine(first_day, time.min, tzinfo=UTC) - timedelta(days=1)
    found = observations(
        session, tenant_id, patient_id, since=since, until=_until(current), code=rule.code
    )
    return [reading for _when, reading in _earlier(found, current, rule.code)]


def history_for(
    session: Session, tenant_id: str, patient_id: str, program: Program, current: Reading
) -> list[Reading]:
    """The earlier readings the program's rules on ``current``'s code look at, oldest first.

    A rise from baseline looks at the first reading of its code, a streak at its days: only
    those are read (the rules see them as they saw the whole history).
    """
    found: dict[str, Reading] = {}
    for rule in program.rules:
        if rule.code != current.code:
            continue
        if rule.kind == "rise-from-baseline":
            readings = _baseline(session, tenant_id, patient_id, rule.code, current)
        elif rule.kind == "consecutive-days-at-most":
            readings = _window(session, tenant_id, patient_id, rule, current)
        else:
            continue
        for reading in readings:
            found.setdefault(reading.observation_id, reading)
    return sorted(found.values(), key=lambda r: (r.effective, r.observation_id))


def load_context(
    session: Session, tenant_id: str, patient_id: str, program: Program, current: Reading
) -> PatientContext:
    """The patient's context for evaluating ``current`` (readings after it are left out)."""
    store = ResourceStore(session, tenant_id)
    goals = goal_targets(s.as_dict() for s in store.for_patient("Goal", patient_id))
    history = history_for(session, tenant_id, patient_id, program, current)
    return PatientContext(history=history, goals=goals)


def last_report(session: Session, tenant_id: str, patient_id: str) -> datetime | None:
    """When the patient's newest reading was made (the first rows, newest first)."""
    for _rid, _when, resource in observations(session, tenant_id, patient_id, first_page=4):
        reading = reading_from(resource)
        if reading is not None:
            return reading.effective
    return None
