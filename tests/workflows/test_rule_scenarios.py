"""Clinical scenarios: report sequences and the alerts each must and must not produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from careloop.fhir.reports import ReportContext, map_rating_report, map_scored_report
from careloop.workflows.rules.engine import (
    GoalTarget,
    PatientContext,
    evaluate_reading,
    missed_checkin,
    reading_from,
)
from careloop.workflows.rules.program import ProgramError, load_program, parse_program

PROGRAM = load_program()
START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _observation(instrument: str, data: Any, day: int) -> dict[str, Any]:
    ctx = ReportContext(
        report_id=f"r-{instrument}-{day}",
        patient_id="p-1",
        effective=START + timedelta(days=day),
        recorded=START + timedelta(days=day),
        client_id="app",
    )
    if isinstance(data, list):
        return map_scored_report(ctx, instrument, data)[-1]
    return map_rating_report(ctx, instrument, data)[0]


def phq9(total: int, item9: int = 0) -> list[int]:
    """Nine answers summing to ``total`` with item 9 as given."""
    answers = [0] * 8 + [item9]
    rest = total - item9
    for i in range(8):
        answers[i] = min(3, rest)
        rest -= answers[i]
    assert rest == 0
    return answers


@dataclass
class Scenario:
    name: str
    readings: list[tuple[str, Any]]
    """(instrument, answers or value), one a day; the last is evaluated."""
    fires: set[str]
    severity: dict[str, str] = field(default_factory=dict)
    goals: dict[str, GoalTarget] = field(default_factory=dict)


SCENARIOS = [
    Scenario(
        "item 9 positive alone",
        [("phq-9", phq9(3, item9=1))],
        {"phq9-item9"},
        {"phq9-item9": "critical"},
    ),
    Scenario("item 9 zero, mild total", [("phq-9", phq9(7))], set()),
    Scenario(
        "severe total and item 9",
        [("phq-9", phq9(22, item9=2))],
        {"phq9-item9", "phq9-total"},
        {"phq9-total": "high", "phq9-item9": "critical"},
    ),
    Scenario(
        "moderately severe total", [("phq-9", phq9(16))], {"phq9-total"}, {"phq9-total": "warning"}
    ),
    Scenario("total 14 is below threshold", [("phq-9", phq9(14))], set()),
    Scenario(
        "worsening 5 points from baseline",
        [("phq-9", phq9(6)), ("phq-9", phq9(8)), ("phq-9", phq9(11))],
        {"phq9-worsening"},
    ),
    Scenario("worsening 4 points is not enough", [("phq-9", phq9(6)), ("phq-9", phq9(10))], set()),
    Scenario("improvement fires nothing", [("phq-9", phq9(16)), ("phq-9", phq9(9))], set()),
    Scenario("GAD-7 severe", [("gad-7", [3, 3, 2, 2, 2, 2, 1])], {"gad7-total"}),
    Scenario("GAD-7 moderate", [("gad-7", [2, 2, 2, 2, 2, 2, 1])], set()),
    Scenario(
        "low mood three days running", [("mood", 2), ("mood", 1), ("mood", 2)], {"mood-low-streak"}
    ),
    Scenario("low mood broken by a good day", [("mood", 2), ("mood", 6), ("mood", 1)], set()),
    Scenario("low mood two days only", [("mood", 1), ("mood", 1)], set()),
    Scenario(
        "care plan goal lowers the bar",
        [("phq-9", phq9(12))],
        {"phq9-total"},
        {"phq9-total": "warning"},
        {"44261-6": GoalTarget("g-1", "44261-6", 9, inclusive=True)},
    ),
    Scenario(
        "care plan goal raises the bar",
        [("phq-9", phq9(16))],
        set(),
        {},
        {"44261-6": GoalTarget("g-2", "44261-6", 17, inclusive=True)},
    ),
    Scenario(
        "goal never hides a severe total",
        [("phq-9", phq9(21))],
        {"phq9-total"},
        {"phq9-total": "high"},
        {"44261-6": GoalTarget("g-3", "44261-6", 25, inclusive=True)},
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(scenario: Scenario) -> None:
    observations = [_observation(i, d, day) for day, (i, d) in enumerate(scenario.readings)]
    history = [reading_from(o) for o in observations[:-1]]
    ctx = PatientContext(history=[r for r in history if r], goals=scenario.goals)
    firings = evaluate_reading(PROGRAM, observations[-1], ctx)
    assert {f.rule_id for f in firings} == scenario.fires
    for firing in firings:
        if firing.rule_id in scenario.severity:
            assert firing.severity == scenario.severity[firing.rule_id]
        explanation = firing.explanation()
        assert explanation["values"] and explanation["threshold"] and explanation["source"]
    assert evaluate_reading(PROGRAM, observations[-1], ctx) == firings  # deterministic


def test_goal_override_names_the_goal_as_source() -> None:
    observation = _observation("phq-9", phq9(12), 0)
    goal = GoalTarget("goal-7", "44261-6", 9, inclusive=True)
    firing = evaluate_reading(PROGRAM, observation, PatientContext(goals={"44261-6": goal}))[0]
    assert firing.source == "Goal/goal-7"
    assert firing.threshold == {"target": "<= 9"}


def test_critical_sorts_first() -> None:
    firings = evaluate_reading(PROGRAM, _observation("phq-9", phq9(22, 1), 0), PatientContext())
    assert [f.severity for f in firings] == ["critical", "high"]


def test_missed_checkin_needs_a_plan_and_a_silence() -> None:
    now = START + timedelta(days=10)
    no_plan = PatientContext()
    assert missed_checkin(PROGRAM, START, START, no_plan, now) is None
    daily = PatientContext(checkin_interval_days=1, plan_id="cp-1")
    assert missed_checkin(PROGRAM, now - timedelta(days=1), START, daily, now) is None
    firing = missed_checkin(PROGRAM, now - timedelta(days=3), START, daily, now)
    assert firing is not None and firing.severity == "info" and firing.source == "CarePlan/cp-1"
    weekly = PatientContext(checkin_interval_days=7, plan_id="cp-2")
    assert missed_checkin(PROGRAM, now - timedelta(days=10), START, weekly, now) is None
    never = missed_checkin(PROGRAM, None, now - timedelta(days=15), weekly, now)
    assert never is not None


def test_fhirpath_rule_is_the_escape_hatch() -> None:
    program = parse_program(
        """
        id = "custom"
        [[rules]]
        id = "item1-max"
        kind = "fhirpath"
        severity = "warning"
        expression = "component.where(code.coding.code = '44250-9').valueInteger = 3"
        """
    )
    hit = _observation("phq-9", [3, 0, 0, 0, 0, 0, 0, 0, 0], 0)
    miss = _observation("phq-9", [2, 0, 0, 0, 0, 0, 0, 0, 0], 0)
    assert [f.rule_id for f in evaluate_reading(program, hit, PatientContext())] == ["item1-max"]
    assert evaluate_reading(program, miss, PatientContext()) == []


def test_invalid_programs_are_refused() -> None:
    with pytest.raises(ProgramError):
        parse_program('[[rules]]\nid = "x"\nkind = "psychic"\nseverity = "warning"\n')
    with pytest.raises(ProgramError):
        parse_program('[[rules]]\nid = "x"\nkind = "fhirpath"\nseverity = "apocalyptic"\n')


@pytest.mark.parametrize("title", ['"two\\nlines"', '"tab\\there"', f'"{"t" * 201}"'])
def test_rule_titles_are_one_printable_line_for_alert_messages(title: str) -> None:
    with pytest.raises(ProgramError, match="title"):
        parse_program(
            f'[[rules]]\nid = "x"\nkind = "fhirpath"\nseverity = "info"\ntitle = {title}\n'
        )
