"""map_scored_report / map_rating_report: shapes, codes, determinism and error fields."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhirpathpy import evaluate

from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import deterministic_id
from careloop.fhir.reports import ReportContext, map_rating_report, map_scored_report

REPORT_ID = "9b2d6a50-0000-4000-8000-00000000a001"
CTX = ReportContext(
    report_id=REPORT_ID,
    patient_id="pat-1",
    effective=datetime(2024, 5, 1, 8, 30, tzinfo=timezone(timedelta(hours=2))),
    recorded=datetime(2024, 5, 1, 6, 31, 5, tzinfo=UTC),
    client_id="moodapp",
    device_name="Synthetic Phone",
    device_version="1.2.3",
    app_report_id="app-rep-7",
    note="synthetic note",
)
PHQ9 = [1, 2, 3, 0, 1, 2, 0, 1, 2]  # total 12 -> moderate


def _codes(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept["coding"]]


def test_phq9_resources_validate_under_r4b() -> None:
    qr, obs = map_scored_report(CTX, "phq-9", PHQ9, difficulty=2)
    QuestionnaireResponse.model_validate(qr)
    Observation.model_validate(obs)
    assert qr["resourceType"] == "QuestionnaireResponse" and obs["resourceType"] == "Observation"


def test_phq9_questionnaire_response() -> None:
    qr, _ = map_scored_report(CTX, "phq-9", PHQ9, difficulty=2)
    assert qr["id"] == deterministic_id(REPORT_ID, "questionnaire-response")
    assert qr["status"] == "completed"
    assert qr["questionnaire"] == "https://careloop.io/fhir/Questionnaire/phq-9"
    assert qr["subject"] == {"reference": "Patient/pat-1"}
    assert qr["identifier"] == {
        "system": "https://careloop.io/fhir/sid/questionnaire-response",
        "value": REPORT_ID,
    }
    assert qr["authored"] == "2024-05-01T08:30:00+02:00"
    link_ids = [i["linkId"] for i in qr["item"]]
    assert link_ids[:9] == [
        "44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
        "44258-2", "44252-5", "44253-3", "44260-8",
    ]  # fmt: skip
    assert link_ids[9:] == ["69722-7", "44261-6"]
    item9 = qr["item"][8]["answer"][0]["valueCoding"]
    assert (item9["system"], item9["code"], item9["display"]) == (
        "http://loinc.org",
        "LA6570-1",
        "More than half the days",
    )
    assert item9["extension"] == [
        {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": 2}
    ]
    assert qr["item"][9]["answer"][0]["valueCoding"]["code"] == "LA6575-0"  # Very difficult
    assert qr["item"][10]["answer"] == [{"valueInteger": 12}]


def test_phq9_observation() -> None:
    qr, obs = map_scored_report(CTX, "phq-9", PHQ9, difficulty=2)
    assert obs["id"] == deterministic_id(REPORT_ID, "observation")
    assert obs["status"] == "final"
    assert _codes(obs["category"][0]) == [
        ("http://terminology.hl7.org/CodeSystem/observation-category", "survey")
    ]
    assert _codes(obs["code"]) == [("http://loinc.org", "44261-6")]
    assert obs["subject"] == {"reference": "Patient/pat-1"}
    assert obs["effectiveDateTime"] == "2024-05-01T08:30:00+02:00"
    assert obs["issued"] == "2024-05-01T06:31:05Z"
    assert obs["valueInteger"] == 12
    assert _codes(obs["interpretation"][0]) == [
        ("https://careloop.io/fhir/CodeSystem/severity-band", "moderate")
    ]
    assert obs["interpretation"][0]["text"] == "Moderate depression"
    assert obs["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
    assert obs["identifier"] == [
        {"system": "https://careloop.io/fhir/sid/observation", "value": REPORT_ID},
        {"system": "https://careloop.io/fhir/sid/app-report/moodapp", "value": "app-rep-7"},
    ]
    assert obs["note"] == [{"text": "synthetic note"}]
    assert obs["device"] == {"display": "Synthetic Phone 1.2.3"}
    assert obs["performer"] == [{"reference": "Patient/pat-1"}]
    assert len(obs["component"]) == 10


def test_item9_readable_with_fhirpath() -> None:
    _, obs = map_scored_report(CTX, "phq-9", PHQ9)
    path = "component.where(code.coding.code='44260-8').valueInteger"
    assert evaluate(obs, path) == [2]
    assert sum(evaluate(obs, "component.valueInteger")) == 12
    assert evaluate(obs, "interpretation.coding.code") == ["moderate"]
    assert len(obs["component"]) == 9  # no difficulty given


def test_difficulty_component_is_coded() -> None:
    _, obs = map_scored_report(CTX, "phq-9", PHQ9, difficulty=3)
    found = evaluate(obs, "component.where(code.coding.code='69722-7').valueCodeableConcept")
    assert [c["code"] for c in found[0]["coding"]] == ["LA6574-3"]  # Extremely difficult


@pytest.mark.parametrize(
    ("instrument", "answers", "total_code", "band"),
    [
        ("phq-2", [2, 1], "55758-7", "positive-screen"),
        ("phq-2", [1, 1], "55758-7", "negative-screen"),
        ("gad-7", [3, 3, 3, 3, 3, 3, 3], "70274-6", "severe"),
        ("gad-7", [0] * 7, "70274-6", "minimal"),
        ("phq-9", [3] * 9, "44261-6", "severe"),
    ],
)
def test_totals_and_bands(instrument: str, answers: list[int], total_code: str, band: str) -> None:
    qr, obs = map_scored_report(CTX, instrument, answers)
    assert obs["code"]["coding"][0]["code"] == total_code
    assert obs["valueInteger"] == sum(answers)
    assert obs["interpretation"][0]["coding"][0]["code"] == band
    assert qr["questionnaire"].endswith(f"/Questionnaire/{instrument}")


def test_mapping_is_deterministic() -> None:
    assert map_scored_report(CTX, "phq-9", PHQ9, 1) == map_scored_report(CTX, "phq-9", PHQ9, 1)
    other = map_scored_report(replace(CTX, report_id="another"), "phq-9", PHQ9, 1)
    assert other[0]["id"] != map_scored_report(CTX, "phq-9", PHQ9, 1)[0]["id"]


def test_optional_context_left_out() -> None:
    ctx = replace(CTX, device_name=None, app_report_id=None, note=None)
    _, obs = map_scored_report(ctx, "gad-7", [1] * 7)
    assert "device" not in obs and "note" not in obs
    assert len(obs["identifier"]) == 1


@pytest.mark.parametrize(
    ("instrument", "answers", "difficulty", "field"),
    [
        ("phq-10", PHQ9, None, "instrument"),
        ("mood", PHQ9, None, "instrument"),
        ("phq-9", PHQ9[:8], None, "answers"),
        ("phq-9", [*PHQ9, 0], None, "answers"),
        ("phq-2", PHQ9, None, "answers"),
        ("phq-9", [0, 0, 0, 4, 0, 0, 0, 0, 0], None, "answers[3]"),
        ("phq-9", [0, -1, 0, 0, 0, 0, 0, 0, 0], None, "answers[1]"),
        ("gad-7", [0, 0, 0, 0, 0, 0, True], None, "answers[6]"),
        ("gad-7", [0, 0, 1.5, 0, 0, 0, 0], None, "answers[2]"),
        ("phq-9", PHQ9, 4, "difficulty"),
        ("phq-2", [0, 0], 1, "difficulty"),
        ("gad-7", [0] * 7, 0, "difficulty"),
    ],
)
def test_scored_errors(
    instrument: str, answers: list[Any], difficulty: int | None, field: str
) -> None:
    with pytest.raises(MappingError) as info:
        map_scored_report(CTX, instrument, answers, difficulty)
    assert info.value.field == field
    assert info.value.message
    assert isinstance(info.value, ValueError)


def test_naive_datetimes_rejected() -> None:
    with pytest.raises(MappingError) as info:
        map_scored_report(replace(CTX, effective=datetime(2024, 5, 1, 8, 30)), "phq-2", [0, 0])
    assert info.value.field == "effective"
    with pytest.raises(MappingError) as info:
        map_rating_report(replace(CTX, recorded=datetime(2024, 5, 1)), "mood", 3)
    assert info.value.field == "recorded"


@pytest.mark.parametrize(
    ("instrument", "value"), [("mood", 7), ("anxiety", 0), ("sleep-quality", 10.0)]
)
def test_integer_ratings(instrument: str, value: float) -> None:
    (obs,) = map_rating_report(CTX, instrument, value)
    Observation.model_validate(obs)
    assert obs["valueInteger"] == int(value) and "valueQuantity" not in obs
    assert _codes(obs["code"]) == [
        ("https://careloop.io/fhir/CodeSystem/symptom-rating", instrument)
    ]
    assert obs["category"][0]["coding"][0]["code"] == "survey"
    assert obs["id"] == deterministic_id(REPORT_ID, "observation")


def test_sleep_duration_quantity() -> None:
    (obs,) = map_rating_report(CTX, "sleep-duration", 7.25)
    Observation.model_validate(obs)
    assert _codes(obs["code"]) == [("http://loinc.org", "93832-4")]
    assert obs["valueQuantity"] == {
        "value": 7.25,
        "unit": "h",
        "system": "http://unitsofmeasure.org",
        "code": "h",
    }
    assert "valueInteger" not in obs


@pytest.mark.parametrize(
    ("instrument", "value", "field"),
    [
        ("mood", 11, "value"),
        ("mood", -1, "value"),
        ("mood", 6.5, "value"),
        ("anxiety", float("nan"), "value"),
        ("sleep-duration", 24.5, "value"),
        ("sleep-duration", float("inf"), "value"),
        ("sleep-quality", True, "value"),
        ("phq-9", 3, "instrument"),
        ("energy", 3, "instrument"),
    ],
)
def test_rating_errors(instrument: str, value: float, field: str) -> None:
    with pytest.raises(MappingError) as info:
        map_rating_report(CTX, instrument, value)
    assert info.value.field == field
