"""The risk-signal rule kind: parsed from TOML, judging RiskAssessments and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from careloop.fhir.risks import CATEGORIES, LEVELS, RiskSignal, map_risk_assessment
from careloop.services.alerts.vocabulary import Severity
from careloop.workflows.routing import critical_by_itself
from careloop.workflows.rules.engine import PatientContext, evaluate_reading, risk_signal_from
from careloop.workflows.rules.program import ProgramError, load_program, parse_program

DEFAULTS = {
    ("self-harm", "high"): "critical",
    ("self-harm", "moderate"): "high",
    ("suicidal-ideation", "high"): "critical",
    ("suicidal-ideation", "moderate"): "high",
    ("crisis", "high"): "critical",
    ("harm-to-others", "high"): "critical",
    ("substance-use", "high"): "warning",
}


def _assessment(category: str, level: str) -> dict[str, Any]:
    return map_risk_assessment(
        RiskSignal(
            signal_id="5f0e2c4e-8d1b-5f4e-9a55-0d6f3c1b2a90",
            patient_id="p-1",
            client_id="cl_" + "a" * 16,
            source="classifier",
            category=category,
            level=level,
            model_name="m",
            model_version="1",
            detected=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        )
    )


def test_the_default_program_judges_every_category_and_level() -> None:
    program = load_program()
    for category in CATEGORIES:
        for level in LEVELS:
            assessment = _assessment(category, level)
            assert risk_signal_from(assessment) == (category, level)
            firings = evaluate_reading(program, assessment, PatientContext())
            severity = firings[0].severity if firings else None
            assert severity == DEFAULTS.get((category, level)), (category, level)
            assert len(firings) <= 1
            assert critical_by_itself(program, assessment) == (severity == Severity.CRITICAL)


def test_risk_rules_and_reading_rules_never_cross() -> None:
    program = parse_program(
        """
        [[rules]]
        id = "any"
        kind = "fhirpath"
        expression = "true"
        severity = "info"

        [[rules]]
        id = "risk"
        kind = "risk-signal"
        categories = ["crisis"]
        tiers = [{ at_least = "low", severity = "warning" }]
        """
    )
    observation = {
        "resourceType": "Observation",
        "id": "o",
        "code": {"coding": [{"code": "crisis"}]},
        "effectiveDateTime": "2026-11-20T09:30:00Z",
    }
    assert [f.rule_id for f in evaluate_reading(program, observation, PatientContext())] == ["any"]
    firings = evaluate_reading(program, _assessment("crisis", "low"), PatientContext())
    assert [(f.rule_id, f.severity) for f in firings] == [("risk", "warning")]
    assert evaluate_reading(program, _assessment("self-harm", "high"), PatientContext()) == []
    # a RiskAssessment that is not careloop's risk signal fires nothing
    foreign = {"resourceType": "RiskAssessment", "status": "final", "code": {"text": "x"}}
    assert evaluate_reading(program, foreign, PatientContext()) == []


@pytest.mark.parametrize(
    "rule",
    [
        'tiers = [{ at_least = "severe", severity = "high" }]\ncategories = ["crisis"]',
        'tiers = [{ at_least = 3, severity = "high" }]\ncategories = ["crisis"]',
        'tiers = [{ at_least = "high", severity = "high" }]',
        'tiers = [{ at_least = "high", severity = "high" }]\ncategories = "crisis"',
        'categories = ["crisis"]\nseverity = "high"',
        'tiers = [{ at_least = "high", severity = "urgent" }]\ncategories = ["crisis"]',
    ],
)
def test_a_bad_risk_rule_is_refused(rule: str) -> None:
    with pytest.raises(ProgramError):
        parse_program(f'[[rules]]\nid = "r"\nkind = "risk-signal"\n{rule}\n')
