"""Loading what rules need about a patient: earlier readings, Goals and check-in frequency."""

from __future__ import annotations

from typing import Any

from careloop.services.store.repository import ResourceStore
from careloop.workflows.rules.engine import GoalTarget, PatientContext, Reading, reading_from

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


def load_context(
    store: ResourceStore, patient_id: str, current: Reading | None = None
) -> PatientContext:
    """The patient's context for evaluating ``current`` (readings after it are left out)."""
    ctx = PatientContext()
    for stored in store.for_patient("Observation", patient_id):
        reading = reading_from(stored.as_dict())
        if reading is None:
            continue
        if current is not None and (
            reading.observation_id == current.observation_id
            or reading.effective > current.effective
        ):
            continue
        ctx.history.append(reading)
    ctx.history.sort(key=lambda r: (r.effective, r.observation_id))
    for stored in store.for_patient("Goal", patient_id):
        goal = stored.as_dict()
        if goal.get("lifecycleStatus") in ("active", "accepted", "planned"):
            for target in _goal_targets(goal):
                ctx.goals[target.code] = target
    for stored in store.for_patient("CarePlan", patient_id):
        plan = stored.as_dict()
        if plan.get("status") != "active":
            continue
        interval = _interval_days(plan)
        if interval is not None and (
            ctx.checkin_interval_days is None or interval < ctx.checkin_interval_days
        ):
            ctx.checkin_interval_days = interval
            ctx.plan_id = str(plan["id"])
    return ctx
