"""The risk-signal builders give valid FHIR R4 for every input the app API admits.

As in tests/fhir/test_builders_valid.py: inputs are drawn from the whole space the API's pydantic
bounds admit (any text the model name and version take, every date-time and UTC offset, optional
references present or not), closed sets (category, level, source) are walked exhaustively, and
each output is validated with fhir.resources (R4B) and HL7's R4 JSON schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.builder_proofs import OFFSETS, admitted, assert_valid, texts

from careloop.fhir.errors import MappingError
from careloop.fhir.risks import (
    CATEGORIES,
    LEVELS,
    SOURCES,
    RiskSignal,
    map_risk_assessment,
    map_risk_provenance,
    risk_assessment_id,
)
from careloop.fhir.validation import OWN_OUTPUT_CHECKS_ENV, own_output_checks
from careloop.services.common.bounds import LAST_YEAR
from careloop.services.common.constrained import SafeDatetime, Text100, Text200
from careloop.services.risks.schemas import Category, Level, Source, Token

T = TypeVar("T")
FAST = settings(max_examples=60, deadline=None)


@pytest.fixture(autouse=True)
def _builders_unchecked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The builders run as in production, without their runtime check: each test validates."""
    monkeypatch.setenv(OWN_OUTPUT_CHECKS_ENV, "false")
    own_output_checks.cache_clear()
    yield
    monkeypatch.undo()
    own_output_checks.cache_clear()


SAFE_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=OFFSETS,
).filter(admitted(SafeDatetime))
UTC_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(LAST_YEAR, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)
UUIDS = st.uuids().map(str)
CLIENT_IDS = st.from_regex(r"cl_[A-Za-z0-9_\-]{16}", fullmatch=True)
TOKENS = st.from_regex(r"[A-Za-z0-9._:~-]{1,128}", fullmatch=True).filter(admitted(Token))
SIGNALS = st.builds(
    RiskSignal,
    signal_id=UUIDS,
    patient_id=UUIDS,
    client_id=CLIENT_IDS,
    source=st.sampled_from(sorted(SOURCES)),
    category=st.sampled_from(sorted(CATEGORIES)),
    level=st.sampled_from(sorted(LEVELS)),
    model_name=texts(Text200, 200),
    model_version=texts(Text100, 100),
    detected=SAFE_DATETIMES,
    conversation=st.one_of(st.none(), TOKENS),
    app_signal_id=st.one_of(st.none(), TOKENS),
)


def _signal(**changes: Any) -> RiskSignal:
    base: dict[str, Any] = {
        "signal_id": "5f0e2c4e-8d1b-5f4e-9a55-0d6f3c1b2a90",
        "patient_id": "0b7e3a51-4c1d-4e8f-9a2b-6d5c4b3a2f10",
        "client_id": "cl_" + "a" * 16,
        "source": "chatbot",
        "category": "self-harm",
        "level": "high",
        "model_name": "ExampleSafetyClassifier",
        "model_version": "2.1.0",
        "detected": datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
    }
    return RiskSignal(**(base | changes))


RECORDED = datetime(2026, 11, 20, 9, 31, tzinfo=UTC)


def test_the_builders_cover_exactly_what_the_api_takes() -> None:
    for literal, known in ((Category, CATEGORIES), (Level, LEVELS), (Source, SOURCES)):
        assert set(literal.__args__) == set(known)  # type: ignore[attr-defined]


def test_every_category_level_and_source_is_valid() -> None:
    for category in CATEGORIES:
        for level in LEVELS:
            for source in SOURCES:
                signal = _signal(category=category, level=level, source=source)
                assessment = map_risk_assessment(signal)
                assert_valid(assessment)
                assert assessment["code"]["coding"][0]["code"] == category
                assert assessment["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == level
                assert_valid(map_risk_provenance(signal, RECORDED))


@FAST
@given(signal=SIGNALS, recorded=UTC_DATETIMES)
@example(
    signal=_signal(
        model_name="\u3000名前\u00a0" * 20,
        model_version="\ufeffv" * 50,
        detected=datetime(1, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=14))),
        conversation="c" * 128,
        app_signal_id="~" * 128,
    ),
    recorded=datetime(LAST_YEAR, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
)
def test_risk_assessments_and_provenance_are_valid(signal: RiskSignal, recorded: datetime) -> None:
    assessment = map_risk_assessment(signal)
    assert_valid(assessment)
    assert assessment["id"] == risk_assessment_id(signal.signal_id)
    assert assessment == map_risk_assessment(signal)  # a retry maps to the same resource
    assert ("basis" in assessment) == (signal.conversation is not None)
    provenance = map_risk_provenance(signal, recorded)
    assert_valid(provenance)
    assert provenance["target"] == [{"reference": f"RiskAssessment/{assessment['id']}"}]
    assert provenance["agent"][0]["who"] == {"reference": "#model", "type": "Device"}


@pytest.mark.parametrize("field", ["category", "level", "source"])
def test_an_unknown_code_is_a_mapping_error(field: str) -> None:
    with pytest.raises(MappingError) as caught:
        map_risk_assessment(_signal(**{field: "other"}))
    assert caught.value.field == field
    with pytest.raises(MappingError):
        map_risk_provenance(_signal(**{field: "other"}), RECORDED)
