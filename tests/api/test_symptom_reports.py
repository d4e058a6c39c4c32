"""The app API: a PHQ-9 in, valid FHIR out, stored once however often it is retried."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from fhirpathpy import evaluate
from support.clients import BASE_URL, Caller
from support.reports import phq9

ITEM9 = "44260-8"


def _fhir(caller: Caller, reference: str) -> dict[str, Any]:
    response = caller.get(f"/fhir/{reference}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    return body


def _ref(created: dict[str, Any], rtype: str) -> str:
    return next(r for r in created["resources"] if r.startswith(f"{rtype}/"))


def test_phq9_becomes_questionnaire_response_observation_and_provenance(caller: Caller) -> None:
    response = caller.post("/v1/symptom-reports", json=phq9(answers=[1, 2, 0, 1, 3, 0, 1, 0, 2]))
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{BASE_URL}/v1/symptom-reports/{created['id']}"
    assert caller.get(response.headers["location"]).json() == created
    observation = _fhir(caller, _ref(created, "Observation"))
    Observation.model_validate(observation)
    assert observation["code"]["coding"][0]["code"] == "44261-6"
    assert observation["valueInteger"] == 10
    assert observation["subject"]["reference"] == created["patient"]
    assert observation["category"][0]["coding"][0]["code"] == "survey"
    assert observation["derivedFrom"][0]["reference"] == _ref(created, "QuestionnaireResponse")
    assert evaluate(observation, f"component.where(code.coding.code='{ITEM9}').valueInteger") == [2]
    assert observation["meta"]["versionId"] == "1"
    qr = _fhir(caller, _ref(created, "QuestionnaireResponse"))
    QuestionnaireResponse.model_validate(qr)
    assert qr["status"] == "completed"
    provenance = _fhir(caller, _ref(created, "Provenance"))
    Provenance.model_validate(provenance)
    targets = {t["reference"] for t in provenance["target"]}
    assert {_ref(created, "Observation"), _ref(created, "QuestionnaireResponse")} <= targets


def test_first_report_creates_the_patient_later_ones_reuse_it(caller: Caller) -> None:
    first = caller.post("/v1/symptom-reports", json=phq9("p-42")).json()
    second = caller.post(
        "/v1/symptom-reports", json=phq9("p-42", effective="2026-11-21T09:30:00Z")
    ).json()
    assert first["patient"] == second["patient"]
    patient = _fhir(caller, first["patient"])
    assert {"system": "https://app.example/patients", "value": "p-42"} in [
        {"system": i["system"], "value": i["value"]} for i in patient["identifier"]
    ]
    found = caller.get("/fhir/Patient", params={"identifier": "https://app.example/patients|p-42"})
    assert found.json()["total"] == 1


def test_idempotency_key_replays_and_refuses_another_body(caller: Caller) -> None:
    key = {"Idempotency-Key": "report-123"}
    one = caller.post("/v1/symptom-reports", json=phq9(), headers=key)
    two = caller.post("/v1/symptom-reports", json=phq9(), headers=key)
    assert one.status_code == two.status_code == 201
    assert one.json() == two.json()
    assert one.headers["location"] == two.headers["location"]
    assert caller.get("/fhir/Observation").json()["total"] == 1
    other = caller.post("/v1/symptom-reports", json=phq9(answers=[0] * 9), headers=key)
    assert other.status_code == 422
    assert other.json()["issue"][0]["expression"] == ["Idempotency-Key"]
    assert caller.get("/fhir/Observation").json()["total"] == 1


def test_retry_without_key_is_recognised_by_its_natural_key(caller: Caller) -> None:
    report = phq9(app_report_id="app-77")
    one = caller.post("/v1/symptom-reports", json=report)
    two = caller.post("/v1/symptom-reports", json=report)
    assert (one.status_code, two.status_code) == (201, 200)
    assert one.json()["resources"] == two.json()["resources"]
    changed = caller.post("/v1/symptom-reports", json={**report, "answers": [3] * 9})
    assert changed.status_code == 409
    assert changed.json()["resourceType"] == "OperationOutcome"
    assert caller.get("/fhir/QuestionnaireResponse").json()["total"] == 1
    # a different app report id at the same time is a different report
    assert caller.post("/v1/symptom-reports", json=phq9(app_report_id="app-78")).status_code == 201


def test_batch_accepts_good_items_and_names_the_bad_ones(caller: Caller) -> None:
    reports = [
        phq9("b-1"),
        phq9("b-2", answers=[1, 2, 3]),
        {
            "patient": {"system": "s", "value": "b-3"},
            "instrument": "mood",
            "value": 2,
            "effective": "2026-11-20T08:00:00+01:00",
        },
        phq9("b-1"),
    ]
    response = caller.post("/v1/symptom-reports/batch", json={"reports": reports})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 201, 200]
    assert results[1]["outcome"]["issue"][0]["expression"] == ["reports[1].answers"]
    assert results[3]["id"] == results[0]["id"]
    assert caller.get("/fhir/Observation").json()["total"] == 2


def test_batch_of_many_reports_for_many_patients(caller: Caller) -> None:
    reports = [
        phq9(f"m-{i % 25}", effective=f"2026-11-{1 + i // 25:02d}T09:00:00Z") for i in range(200)
    ]
    results = caller.post("/v1/symptom-reports/batch", json=reports).json()["results"]
    assert all(r["status"] == 201 for r in results)
    assert caller.get("/fhir/Patient", params={"_count": 0}).json()["total"] == 25
    assert caller.get("/fhir/Observation", params={"_count": 0}).json()["total"] == 200
    again = caller.post("/v1/symptom-reports/batch", json=reports).json()["results"]
    assert all(r["status"] == 200 for r in again)
    assert caller.get("/fhir/Observation", params={"_count": 0}).json()["total"] == 200


def test_gad7_and_phq2(caller: Caller) -> None:
    gad = caller.post(
        "/v1/symptom-reports",
        json={**phq9(), "instrument": "gad-7", "answers": [3, 3, 3, 3, 3, 0, 1]},
    )
    assert gad.status_code == 201, gad.text
    observation = _fhir(caller, _ref(gad.json(), "Observation"))
    assert observation["code"]["coding"][0]["code"] == "70274-6"
    assert observation["valueInteger"] == 16
    phq2 = caller.post(
        "/v1/symptom-reports", json={**phq9(), "instrument": "phq-2", "answers": [1, 2]}
    )
    assert phq2.status_code == 201, phq2.text
    assert _fhir(caller, _ref(phq2.json(), "Observation"))["code"]["coding"][0]["code"] == "55758-7"


def test_ratings_have_the_right_value_types(caller: Caller) -> None:
    base = {"patient": {"system": "s", "value": "r-1"}, "effective": "2026-11-20T22:00:00Z"}
    mood = caller.post("/v1/symptom-reports", json={**base, "instrument": "mood", "value": 3})
    assert mood.status_code == 201, mood.text
    assert _fhir(caller, _ref(mood.json(), "Observation"))["valueInteger"] == 3
    sleep = caller.post(
        "/v1/symptom-reports", json={**base, "instrument": "sleep-duration", "value": 7.5}
    )
    assert sleep.status_code == 201, sleep.text
    quantity = _fhir(caller, _ref(sleep.json(), "Observation"))["valueQuantity"]
    assert quantity["value"] == 7.5
    assert (quantity["system"], quantity["code"]) == ("http://unitsofmeasure.org", "h")


def test_concurrent_first_reports_for_one_new_patient_make_one_patient(caller: Caller) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def post(day: int) -> int:
        report = phq9("race-1", effective=f"2026-11-{day:02d}T09:00:00Z")
        return int(caller.post("/v1/symptom-reports", json=report).status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(post, range(1, 17)))
    assert statuses == [201] * 16
    found = caller.get(
        "/fhir/Patient", params={"identifier": "https://app.example/patients|race-1"}
    )
    assert found.json()["total"] == 1
    assert caller.get("/fhir/Observation", params={"_count": 0}).json()["total"] == 16


def test_concurrent_copies_of_one_report_store_it_once(caller: Caller) -> None:
    from concurrent.futures import ThreadPoolExecutor

    report = phq9("race-2", effective="2026-11-03T09:00:00Z")
    caller.post("/v1/symptom-reports", json=phq9("race-2", effective="2026-11-02T09:00:00Z"))

    def post(_n: int) -> tuple[int, str]:
        answer = caller.post("/v1/symptom-reports", json=report)
        return int(answer.status_code), str(answer.json()["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(12)))
    assert sorted(status for status, _ in answers) == [200] * 11 + [201]
    assert len({report_id for _, report_id in answers}) == 1
    assert caller.get("/fhir/Observation", params={"_count": 0}).json()["total"] == 2


def test_a_report_twice_in_one_batch_is_stored_once_and_a_changed_copy_refused(
    caller: Caller,
) -> None:
    report = phq9("twice-1", effective="2026-11-04T09:00:00Z")
    changed = {**report, "answers": [3] * 9}
    results = caller.post(
        "/v1/symptom-reports/batch", json={"reports": [report, report, changed]}
    ).json()["results"]
    assert [r["status"] for r in results] == [201, 200, 409]
    assert results[1]["id"] == results[0]["id"]
    again = caller.post("/v1/symptom-reports/batch", json={"reports": [changed, report]})
    assert [r["status"] for r in again.json()["results"]] == [409, 200]
    assert caller.get("/fhir/Observation", params={"_count": 0}).json()["total"] == 1
