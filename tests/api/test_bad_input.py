"""Bad input gets a clear 4xx OperationOutcome naming the field, never a 500 or a half write."""

from __future__ import annotations

from typing import Any

import pytest
from support.clients import Caller
from support.reports import phq9


def _issue_expressions(body: dict[str, Any]) -> list[str]:
    assert body["resourceType"] == "OperationOutcome", body
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"answers": [1, 2, 0]}, "answers"),
        ({"answers": [1, 2, 0, 1, 4, 0, 1, 0, 1]}, "answers[4]"),
        ({"answers": [1, 2, 0, 1, -1, 0, 1, 0, 1]}, "answers[4]"),
        ({"instrument": "phq-99"}, "instrument"),
        ({"effective": "2099-01-01T00:00:00Z"}, "effective"),
        ({"effective": "2026-11-20T09:30:00"}, "effective"),
        ({"effective": "yesterday"}, "effective"),
        ({"patient": {"system": "s"}}, "patient.value"),
        ({"difficulty": 7}, "difficulty"),
        ({"value": 3}, "value"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_reports_name_the_field(caller: Caller, change: dict[str, Any], field: str) -> None:
    response = caller.post("/v1/symptom-reports", json={**phq9(), **change})
    assert response.status_code == 422, response.text
    assert field in _issue_expressions(response.json())
    assert caller.get("/fhir/Observation").json()["total"] == 0
    assert caller.get("/fhir/Patient").json()["total"] == 0


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"instrument": "mood", "value": 11}, "value"),
        ({"instrument": "mood", "value": 2.5}, "value"),
        ({"instrument": "mood"}, "value"),
        ({"instrument": "sleep-duration", "value": 30}, "value"),
        ({"instrument": "mood", "value": 2, "answers": [1]}, "answers"),
    ],
)
def test_invalid_ratings_name_the_field(caller: Caller, report: dict[str, Any], field: str) -> None:
    body = {"patient": {"system": "s", "value": "v"}, "effective": "2026-11-20T09:30:00Z", **report}
    response = caller.post("/v1/symptom-reports", json=body)
    assert response.status_code == 422, response.text
    assert field in _issue_expressions(response.json())


def test_malformed_json_is_400(caller: Caller) -> None:
    response = caller.post(
        "/v1/symptom-reports",
        content=b'{"patient": ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert _issue_expressions(response.json()) == ["body"]


def test_wrong_content_type_is_415(caller: Caller) -> None:
    response = caller.post(
        "/v1/symptom-reports", content=b"patient=p-1", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert _issue_expressions(response.json()) == ["Content-Type"]


def test_body_over_one_mib_is_413(caller: Caller) -> None:
    big = phq9(note="x" * (1024 * 1024 + 10))
    response = caller.post("/v1/symptom-reports", json=big)
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"


def test_streamed_body_over_one_mib_is_413(caller: Caller) -> None:
    def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 65536

    response = caller.post(
        "/v1/symptom-reports", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_batch_over_the_limit_is_refused_whole(caller: Caller) -> None:
    response = caller.post("/v1/symptom-reports/batch", json={"reports": [phq9()] * 1001})
    assert response.status_code == 413
    assert _issue_expressions(response.json()) == ["reports"]
    assert caller.get("/fhir/Observation").json()["total"] == 0


def test_batch_that_is_not_a_list(caller: Caller) -> None:
    response = caller.post("/v1/symptom-reports/batch", json={"reports": "many"})
    assert response.status_code == 422
    assert _issue_expressions(response.json()) == ["reports"]


def test_patch_of_unknown_session_is_404(caller: Caller) -> None:
    response = caller.patch("/v1/telehealth-sessions/no-such-session", json={"status": "finished"})
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_unknown_routes_and_methods_are_operation_outcomes(caller: Caller) -> None:
    assert caller.get("/v1/nothing-here").json()["resourceType"] == "OperationOutcome"
    assert caller.get("/fhir/Medication").status_code == 404
    response = caller.http.delete("/v1/symptom-reports", headers=caller.headers)
    assert response.status_code == 405
    assert response.json()["resourceType"] == "OperationOutcome"


def test_invalid_fhir_observation_names_the_element(caller: Caller) -> None:
    patient = caller.post("/v1/symptom-reports", json=phq9()).json()["patient"]
    observation = {
        "resourceType": "Observation",
        "status": "not-a-status",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": patient},
    }
    response = caller.post("/fhir/Observation", json=observation)
    assert response.status_code == 422
    assert any("status" in e for e in _issue_expressions(response.json()))
    unknown = {**observation, "status": "final", "subject": {"reference": "Patient/nobody"}}
    response = caller.post("/fhir/Observation", json=unknown)
    assert response.status_code == 422
    assert _issue_expressions(response.json()) == ["Observation.subject"]
    wrong_type = {"resourceType": "Patient"}
    assert caller.post("/fhir/Observation", json=wrong_type).status_code == 422


def test_unknown_search_parameters_are_ignored_unless_strict(caller: Caller) -> None:
    lenient = caller.get("/fhir/Observation", params={"flavour": "x", "_count": "3"})
    assert lenient.status_code == 200
    assert lenient.json()["link"][0]["url"].endswith("/fhir/Observation?_count=3")
    strict = caller.get(
        "/fhir/Observation", params={"flavour": "x"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["flavour"]


def test_bad_search_parameters_are_400(caller: Caller) -> None:
    for params in (
        {"date": "ge-yesterday"},
        {"_count": "-1"},
        {"_sort": "color"},
        {"_page": "garbage"},
    ):
        response = caller.get("/fhir/Observation", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
