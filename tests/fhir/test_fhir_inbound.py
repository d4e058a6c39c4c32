"""parse_questionnaire_response: recognition, answers and error locations."""

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from careloop.fhir.inbound import parse_questionnaire_response
from careloop.fhir.reports import ReportContext, map_scored_report
from careloop.fhir.validation import FhirValidationError

CTX = ReportContext(
    report_id="report-in-1",
    patient_id="pat-9",
    effective=datetime(2024, 6, 2, 21, 0, tzinfo=UTC),
    recorded=datetime(2024, 6, 2, 21, 1, tzinfo=UTC),
    client_id="moodapp",
)
PHQ9 = [0, 1, 2, 3, 0, 1, 2, 3, 1]


def _phq9_qr() -> dict[str, Any]:
    return copy.deepcopy(map_scored_report(CTX, "phq-9", PHQ9, difficulty=1)[0])


def _expressions(qr: Any) -> list[str]:
    with pytest.raises(FhirValidationError) as info:
        parse_questionnaire_response(qr)
    return [i.expression for i in info.value.issues]


@pytest.mark.parametrize(
    ("instrument", "answers", "difficulty"),
    [("phq-9", PHQ9, 3), ("phq-9", PHQ9, None), ("phq-2", [3, 2], None), ("gad-7", [2] * 7, None)],
)
def test_round_trip(instrument: str, answers: list[int], difficulty: int | None) -> None:
    qr = map_scored_report(CTX, instrument, answers, difficulty)[0]
    parsed = parse_questionnaire_response(qr)
    assert parsed.instrument == instrument
    assert parsed.answers == tuple(answers)
    assert parsed.difficulty == difficulty
    assert parsed.patient_reference == "Patient/pat-9"
    assert parsed.authored == CTX.effective and parsed.authored.tzinfo is not None


def _minimal_qr(questionnaire: str | None, items: list[dict[str, Any]]) -> dict[str, Any]:
    qr: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": {"reference": "Patient/abc"},
        "authored": "2024-06-02T09:00:00-05:00",
        "item": items,
    }
    if questionnaire:
        qr["questionnaire"] = questionnaire
    return qr


def test_loinc_canonical_and_integer_answers() -> None:
    items = [
        {"linkId": "/69725-0", "answer": [{"valueInteger": 1}]},
        {"linkId": "/68509-9", "answer": [{"valueInteger": 0}]},
        {"linkId": "/69733-4", "answer": [{"valueInteger": 3}]},
        {"linkId": "/69734-2", "answer": [{"valueInteger": 2}]},
        {"linkId": "/69735-9", "answer": [{"valueCoding": {"code": "LA6569-3"}}]},
        {"linkId": "/69689-8", "answer": [{"valueInteger": 0}]},
        {"linkId": "/69736-7", "answer": [{"valueInteger": 0}]},
    ]
    parsed = parse_questionnaire_response(_minimal_qr("http://loinc.org/q/69737-5", items))
    assert parsed.instrument == "gad-7"
    assert parsed.answers == (1, 0, 3, 2, 1, 0, 0)
    assert parsed.difficulty is None
    assert parsed.authored.utcoffset() is not None


def test_instrument_inferred_from_link_ids_in_a_group() -> None:
    answers = [{"valueCoding": {"system": "http://loinc.org", "code": "LA6571-9"}}]
    group = {
        "linkId": "phq2-group",
        "item": [
            {"linkId": "44250-9", "answer": answers},
            {"linkId": "44255-8", "answer": answers},
        ],
    }
    parsed = parse_questionnaire_response(_minimal_qr(None, [group]))
    assert (parsed.instrument, parsed.answers) == ("phq-2", (3, 3))


def test_unknown_questionnaire() -> None:
    items = [{"linkId": "q1", "answer": [{"valueInteger": 1}]}]
    qr = _minimal_qr("http://example.org/Questionnaire/bdi", items)
    assert _expressions(qr) == ["QuestionnaireResponse.questionnaire"]


def test_unknown_answer_code() -> None:
    qr = _phq9_qr()
    qr["item"][8]["answer"][0]["valueCoding"]["code"] = "LA9999-9"
    assert _expressions(qr) == ["QuestionnaireResponse.item[8].answer[0].valueCoding"]


def test_answer_from_other_code_system() -> None:
    qr = _phq9_qr()
    qr["item"][0]["answer"][0]["valueCoding"]["system"] = "http://example.org"
    assert _expressions(qr) == ["QuestionnaireResponse.item[0].answer[0].valueCoding"]


def test_integer_out_of_range() -> None:
    qr = _phq9_qr()
    qr["item"][2]["answer"] = [{"valueInteger": 4}]
    assert _expressions(qr) == ["QuestionnaireResponse.item[2].answer[0].valueInteger"]


def test_missing_answers() -> None:
    qr = _phq9_qr()
    del qr["item"][3]["answer"]
    qr["item"].pop(5)
    assert _expressions(qr) == [
        "QuestionnaireResponse.item[3].answer",
        "QuestionnaireResponse.item",
    ]


def test_wrong_total_rejected() -> None:
    qr = _phq9_qr()
    assert qr["item"][-1]["linkId"] == "44261-6"
    qr["item"][-1]["answer"] = [{"valueInteger": 2}]
    assert _expressions(qr) == ["QuestionnaireResponse.item[10].answer[0].valueInteger"]


def test_missing_subject_and_authored_reported_together() -> None:
    qr = _phq9_qr()
    del qr["subject"], qr["authored"]
    assert _expressions(qr) == ["QuestionnaireResponse.subject", "QuestionnaireResponse.authored"]


@pytest.mark.parametrize("authored", ["2024-06-02", "2024-06", "2024-06-02T09:00:00"])
def test_authored_needs_time_and_timezone(authored: str) -> None:
    qr = _phq9_qr()
    qr["authored"] = authored
    assert _expressions(qr) == ["QuestionnaireResponse.authored"]


def test_subject_must_be_patient() -> None:
    qr = _phq9_qr()
    qr["subject"] = {"reference": "Group/g1"}
    assert _expressions(qr) == ["QuestionnaireResponse.subject"]


def test_in_progress_rejected() -> None:
    qr = _phq9_qr()
    qr["status"] = "in-progress"
    assert _expressions(qr) == ["QuestionnaireResponse.status"]


def test_structurally_invalid_resource() -> None:
    qr = _phq9_qr()
    qr["item"][0]["answer"][0]["valueCoding"] = "LA6568-5"
    assert _expressions(qr) == ["QuestionnaireResponse.item[0].answer[0].valueCoding"]
    assert _expressions({"resourceType": "Observation", "status": "final", "code": {}}) == [
        "resourceType"
    ]
