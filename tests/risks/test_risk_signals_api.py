"""POST /v1/risk-signals: a RiskAssessment and Provenance once per signal, and no text ever."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.riskassessment import RiskAssessment
from risk_bodies import signal
from sqlalchemy import Engine
from support.clients import Caller, make_caller

from careloop.fhir.risks import RISK_CATEGORY_SYSTEM, RISK_PROBABILITY


def _read(caller: Caller, reference: str) -> dict[str, Any]:
    response = caller.get(f"/fhir/{reference}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_signal_becomes_a_risk_assessment_with_provenance_naming_the_model(
    caller: Caller,
) -> None:
    created = caller.post(
        "/v1/risk-signals", json=signal(conversation="conv-7f3a", app_signal_id="s-1")
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"].endswith(f"/v1/risk-signals/{body['id']}")
    ra_ref, prov_ref = body["resources"]
    assessment = _read(caller, ra_ref)
    RiskAssessment.model_validate(assessment)
    assert assessment["status"] == "final"
    assert assessment["subject"]["reference"] == body["patient"]
    assert assessment["occurrenceDateTime"] == "2026-11-20T09:30:00Z"
    assert assessment["code"]["coding"][0]["system"] == RISK_CATEGORY_SYSTEM
    assert assessment["code"]["coding"][0]["code"] == "self-harm"
    risk = assessment["prediction"][0]["qualitativeRisk"]["coding"][0]
    assert (risk["system"], risk["code"]) == (RISK_PROBABILITY, "high")
    [device] = assessment["contained"]
    assert device["deviceName"][0]["name"] == "ExampleSafetyClassifier"
    assert device["version"][0]["value"] == "2.1.0"
    assert assessment["performer"]["reference"] == "#model"
    assert assessment["basis"][0]["identifier"]["value"] == "conv-7f3a"
    assert "note" not in assessment
    provenance = _read(caller, prov_ref)
    Provenance.model_validate(provenance)
    assert provenance["target"] == [{"reference": ra_ref}]
    assert provenance["agent"][0]["who"]["reference"] == "#model"
    assert provenance["contained"][0]["resourceType"] == "Device"
    assert caller.get(f"/v1/risk-signals/{body['id']}").json() == body


def test_fhir_search_finds_risk_assessments_by_patient_code_and_date(caller: Caller) -> None:
    first = caller.post("/v1/risk-signals", json=signal("rs-s", "crisis", "low")).json()
    caller.post(
        "/v1/risk-signals", json=signal("rs-s", "substance-use", detected="2026-11-22T10:00:00Z")
    )
    caller.post("/v1/risk-signals", json=signal("rs-other"))

    def ids(**params: str) -> list[str]:
        response = caller.get("/fhir/RiskAssessment", params=params)
        assert response.status_code == 200, response.text
        return sorted(e["resource"]["id"] for e in response.json().get("entry", []))

    patient = first["patient"]
    assert len(ids(subject=patient)) == 2
    assert len(ids(patient=patient)) == 2
    assert ids(patient=patient, code=f"{RISK_CATEGORY_SYSTEM}|crisis") == [
        first["resources"][0].split("/")[1]
    ]
    assert ids(patient=patient, date="lt2026-11-21") == [first["resources"][0].split("/")[1]]
    assert len(ids(patient=patient, date="ge2026-11-21")) == 1
    assert (
        caller.get("/fhir/Provenance", params={"target": first["resources"][0]}).json()["total"]
        == 1
    )
    capability = caller.get("/fhir/metadata").json()
    [resource] = [r for r in capability["rest"][0]["resource"] if r["type"] == "RiskAssessment"]
    assert {"patient", "subject", "date", "code"} <= {p["name"] for p in resource["searchParam"]}


def test_a_retry_gets_the_first_answer_and_changed_content_is_a_conflict(
    caller: Caller,
) -> None:
    first = caller.post("/v1/risk-signals", json=signal(app_signal_id="s-r"))
    assert first.status_code == 201
    again = caller.post("/v1/risk-signals", json=signal(app_signal_id="s-r"))
    assert (again.status_code, again.json()) == (200, first.json())
    # the same signal without an app id is recognised by its content
    bare = caller.post("/v1/risk-signals", json=signal("rs-bare"))
    assert bare.status_code == 201
    assert caller.post("/v1/risk-signals", json=signal("rs-bare")).json() == bare.json()
    changed = caller.post("/v1/risk-signals", json=signal(level="low", app_signal_id="s-r"))
    assert changed.status_code == 409
    issue = changed.json()["issue"][0]
    assert issue["expression"] == ["app_signal_id"]
    patient = first.json()["patient"]
    found = caller.get("/fhir/RiskAssessment", params={"patient": patient}).json()
    assert found["total"] == 1


def test_an_idempotency_key_replays_and_refuses_another_body(caller: Caller) -> None:
    headers = {"Idempotency-Key": "k-risk-1"}
    first = caller.post("/v1/risk-signals", json=signal("rs-key"), headers=headers)
    assert first.status_code == 201
    replay = caller.post("/v1/risk-signals", json=signal("rs-key"), headers=headers)
    assert (replay.status_code, replay.json()) == (201, first.json())
    other = caller.post("/v1/risk-signals", json=signal("rs-key", level="low"), headers=headers)
    assert other.status_code == 422
    assert other.json()["issue"][0]["expression"] == ["Idempotency-Key"]


def test_concurrent_retries_store_one_signal(app_client: TestClient, engine: Engine) -> None:
    callers = [make_caller(app_client, engine)]
    caller = callers[0]
    body = signal("rs-race", app_signal_id="s-race")
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def post() -> None:
        barrier.wait()
        results.append(caller.post("/v1/risk-signals", json=body))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 200, 200, 201], [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    patient = results[0].json()["patient"]
    assert caller.get("/fhir/RiskAssessment", params={"patient": patient}).json()["total"] == 1
    assert caller.get("/fhir/Patient", params={"_id": patient.split("/")[1]}).json()["total"] == 1


def _refused(caller: Caller, body: Any, field: str, status: int = 422) -> Any:
    response = caller.post("/v1/risk-signals", json=body)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = [e for i in outcome["issue"] for e in i.get("expression", [])]
    assert any(e == field or e.startswith(field) for e in expressions), expressions
    return response


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "boredom"}, "category"),
        ({"level": "severe"}, "level"),
        ({"level": 3}, "level"),
        ({"source": "human"}, "source"),
        ({"text": "I want to hurt myself"}, "text"),
        ({"transcript": ["hello"]}, "transcript"),
        ({"note": "free text"}, "note"),
        ({"conversation": "I feel like ending it all"}, "conversation"),
        ({"conversation": "c" * 129}, "conversation"),
        ({"app_signal_id": "id with spaces"}, "app_signal_id"),
        ({"model": {"name": "m" * 201, "version": "1"}}, "model.name"),
        ({"model": {"name": "m", "version": "1", "prompt": "x"}}, "model.prompt"),
        ({"model": {"name": "m\x00", "version": "1"}}, "model.name"),
        ({"patient": {"system": "https://a.example/p", "value": "v" * 201}}, "patient.value"),
        ({"detected": "2026-11-20T09:30:00"}, "detected"),
        ({"detected": "2999-01-01T00:00:00Z"}, "detected"),
    ],
)
def test_bad_fields_are_refused_by_name(caller: Caller, change: dict[str, Any], field: str) -> None:
    response = _refused(caller, signal() | change, field)
    # a refusal never echoes what was sent (it could be conversation text)
    for value in _strings(change):
        assert value not in response.text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) > 3 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def test_missing_fields_and_scopes_are_refused(
    caller: Caller, app_client: TestClient, engine: Engine
) -> None:
    body = signal()
    del body["model"]
    _refused(caller, body, "model")
    reader = make_caller(app_client, engine, scope="system/Observation.cruds")
    response = reader.post("/v1/risk-signals", json=signal())
    assert response.status_code == 403
    assert response.json()["resourceType"] == "OperationOutcome"
    assert caller.get("/v1/risk-signals/nope").status_code == 404
    writer = make_caller(app_client, engine, scope="system/RiskAssessment.c")
    assert writer.post("/v1/risk-signals", json=signal("rs-scope")).status_code == 201
