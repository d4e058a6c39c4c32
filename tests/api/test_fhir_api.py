"""The FHIR REST API: capability, read, vread, search with stable paging, native writes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from support.clients import Caller
from support.reports import phq9


def _get(caller: Caller, url: str, **params: Any) -> dict[str, Any]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    response = caller.get(path, params=params or None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _seed(caller: Caller, patient: str, days: int) -> None:
    reports = [phq9(patient, effective=f"2026-11-{d:02d}T09:00:00Z") for d in range(1, days + 1)]
    results = caller.post("/v1/symptom-reports/batch", json=reports).json()["results"]
    assert all(r["status"] == 201 for r in results)


def test_metadata_lists_what_is_supported(app_client: Any) -> None:
    response = app_client.get("/fhir/metadata")
    assert response.status_code == 200
    statement = response.json()
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == {
        "Patient",
        "Observation",
        "QuestionnaireResponse",
        "Encounter",
        "Provenance",
        "CarePlan",
        "Goal",
        "CareTeam",
        "Practitioner",
        "PractitionerRole",
        "Task",
        "Communication",
        "Consent",
        "RiskAssessment",
        "Group",
    }
    observation_params = {p["name"] for p in resources["Observation"]["searchParam"]}
    assert {"patient", "subject", "code", "category", "date", "_lastUpdated"} <= observation_params


def test_search_observations_by_patient_code_category_and_date(caller: Caller) -> None:
    _seed(caller, "s-1", 10)
    _seed(caller, "s-2", 3)
    patient = _get(caller, "/fhir/Patient", identifier="https://app.example/patients|s-1")
    patient_ref = "Patient/" + patient["entry"][0]["resource"]["id"]
    bundle = _get(caller, "/fhir/Observation", patient=patient_ref)
    Bundle.model_validate(bundle)
    assert bundle["total"] == 10
    assert (
        _get(caller, "/fhir/Observation", subject=patient_ref, code="http://loinc.org|44261-6")[
            "total"
        ]
        == 10
    )
    assert _get(caller, "/fhir/Observation", code="http://loinc.org|70274-6")["total"] == 0
    assert _get(caller, "/fhir/Observation", category="survey")["total"] == 13
    ranged = _get(caller, "/fhir/Observation", patient=patient_ref, date="ge2026-11-05")
    assert ranged["total"] == 6
    both = caller.get(
        "/fhir/Observation",
        params=[("patient", patient_ref), ("date", "ge2026-11-03"), ("date", "lt2026-11-06")],
    ).json()
    assert both["total"] == 3
    newest = _get(caller, "/fhir/Observation", patient=patient_ref, _sort="-date", _count="1")
    assert newest["entry"][0]["resource"]["effectiveDateTime"].startswith("2026-11-10")
    assert _get(caller, "/fhir/Observation", _lastUpdated="ge2020-01-01")["total"] == 13
    assert _get(caller, "/fhir/QuestionnaireResponse", patient=patient_ref)["total"] == 10


def test_paging_is_stable_while_data_arrives(caller: Caller) -> None:
    _seed(caller, "pg-1", 12)
    page = _get(caller, "/fhir/Observation", _count="5", _sort="-date")
    seen = [e["resource"]["id"] for e in page["entry"]]
    assert page["total"] == 12
    _seed(caller, "pg-2", 4)  # arrives between pages
    while next_link := next((k["url"] for k in page["link"] if k["relation"] == "next"), None):
        page = _get(caller, next_link)
        assert page["total"] == 12
        seen.extend(e["resource"]["id"] for e in page["entry"])
    assert len(seen) == len(set(seen)) == 12
    assert _get(caller, "/fhir/Observation")["total"] == 16


def test_read_etag_and_conditional_read(caller: Caller) -> None:
    created = caller.post("/v1/symptom-reports", json=phq9()).json()
    observation = next(r for r in created["resources"] if r.startswith("Observation/"))
    response = caller.get(f"/fhir/{observation}")
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    again = caller.get(f"/fhir/{observation}", headers={"If-None-Match": 'W/"1"'})
    assert again.status_code == 304
    assert caller.get(f"/fhir/{observation}/_history/1").json()["id"] == observation.split("/")[1]
    assert caller.get("/fhir/Observation/does-not-exist").status_code == 404


def _questionnaire_response(patient_ref: str, answers: list[int]) -> dict[str, Any]:
    from careloop.fhir.terminology import SCORED_INSTRUMENTS

    phq = SCORED_INSTRUMENTS["phq-9"]
    items = []
    for item, score in zip(phq.items, answers, strict=True):
        option = phq.answers[score]
        items.append(
            {
                "linkId": item.code,
                "answer": [
                    {
                        "valueCoding": {
                            "system": "http://loinc.org",
                            "code": option.code,
                            "display": option.display,
                        }
                    }
                ],
            }
        )
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": phq.questionnaire,
        "subject": {"reference": patient_ref},
        "authored": "2026-11-22T10:00:00Z",
        "identifier": {"system": "https://app.example/qr", "value": "qr-1"},
        "item": items,
    }


def test_native_questionnaire_response_maps_to_the_same_observations(caller: Caller) -> None:
    patient_ref = caller.post("/v1/symptom-reports", json=phq9("n-1")).json()["patient"]
    qr = _questionnaire_response(patient_ref, [0, 0, 0, 0, 0, 0, 0, 0, 3])
    response = caller.post("/fhir/QuestionnaireResponse", json=qr)
    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith("http://testserver/fhir/QuestionnaireResponse/")
    stored = response.json()
    observations = _get(caller, "/fhir/Observation", patient=patient_ref, date="2026-11-22")
    assert observations["total"] == 1
    observation = observations["entry"][0]["resource"]
    assert observation["valueInteger"] == 3
    assert observation["derivedFrom"][0]["reference"] == f"QuestionnaireResponse/{stored['id']}"
    assert caller.post("/fhir/QuestionnaireResponse", json=qr).status_code == 200  # a retry
    bad = {**qr, "item": qr["item"][:5]}
    response = caller.post("/fhir/QuestionnaireResponse", json=bad)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"][0].startswith("QuestionnaireResponse")


def _observation(patient_ref: str, value: int = 7) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "survey",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": "2026-11-23T08:00:00Z",
        "valueInteger": value,
        "identifier": [{"system": "https://app.example/obs", "value": "o-1"}],
    }


def test_native_observation_with_conditional_create(caller: Caller) -> None:
    patient_ref = caller.post("/v1/symptom-reports", json=phq9("c-1")).json()["patient"]
    headers = {
        "If-None-Exist": "identifier=https://app.example/obs|o-1",
        "Content-Type": "application/fhir+json",
    }
    first = caller.post("/fhir/Observation", json=_observation(patient_ref), headers=headers)
    assert first.status_code == 201, first.text
    assert first.headers["etag"] == 'W/"1"'
    second = caller.post("/fhir/Observation", json=_observation(patient_ref), headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    careloop_ids = [i for i in first.json()["identifier"] if "careloop" in i["system"]]
    assert careloop_ids, "every created resource carries a careloop business identifier"


def test_batch_bundle_entries_stand_alone(caller: Caller) -> None:
    patient_ref = caller.post("/v1/symptom-reports", json=phq9("bb-1")).json()["patient"]
    good = _observation(patient_ref)
    bad = {**_observation(patient_ref), "status": "bogus", "identifier": []}
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": good, "request": {"method": "POST", "url": "Observation"}},
            {"resource": bad, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    response = caller.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    Bundle.model_validate(result)
    assert result["type"] == "batch-response"
    assert result["entry"][0]["response"]["status"].startswith("201")
    assert result["entry"][1]["response"]["status"] == "422"
    expression = result["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0]
    assert expression.startswith("Bundle.entry[1].resource")


def test_transaction_is_all_or_nothing(caller: Caller) -> None:
    patient_ref = caller.post("/v1/symptom-reports", json=phq9("tx-1")).json()["patient"]
    qr = _questionnaire_response(patient_ref, [1] * 9)
    obs = {
        **_observation(patient_ref),
        "derivedFrom": [{"reference": "urn:uuid:1b1c0f0e-0000-4000-8000-000000000001"}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1b1c0f0e-0000-4000-8000-000000000001",
                "resource": qr,
                "request": {"method": "POST", "url": "QuestionnaireResponse"},
            },
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    before = _get(caller, "/fhir/Observation")["total"]
    response = caller.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    qr_location = entries[0]["response"]["location"]
    stored_obs = _get(caller, entries[1]["response"]["location"])
    assert qr_location.split("/fhir/")[1].startswith(stored_obs["derivedFrom"][0]["reference"])
    assert _get(caller, "/fhir/Observation")["total"] == before + 2

    failing = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    **_observation(patient_ref),
                    "identifier": [{"system": "https://app.example/obs", "value": "fresh"}],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {**_observation(patient_ref), "status": "bogus"},
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = caller.post("/fhir", json=failing)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"][0].startswith("Bundle.entry[1]")
    assert _get(caller, "/fhir/Observation")["total"] == before + 2


def test_every_read_is_audited_with_ids_only(caller: Caller, engine: Any) -> None:
    from sqlmodel import select

    from careloop.services.audit.models import AuditRecord
    from careloop.services.tenancy.models import Tenant
    from careloop.services.unit_of_work import session_scope

    created = caller.post("/v1/symptom-reports", json=phq9("audit-me")).json()
    observation = next(r for r in created["resources"] if r.startswith("Observation/"))
    caller.get(f"/fhir/{observation}")
    caller.get("/fhir/Patient", params={"identifier": "https://app.example/patients|audit-me"})
    with session_scope(engine) as session:
        tenant = session.exec(select(Tenant).where(Tenant.name == caller.tenant)).one()
        in_tenant = select(AuditRecord).where(AuditRecord.tenant_id == tenant.id)
        records = session.exec(in_tenant.where(AuditRecord.kind != "token")).all()
    # The report's POST is audited as one write of what it created (services/audit/writes.py).
    assert [(r.kind, r.action) for r in records] == [
        ("create", "C"),
        ("access", "R"),
        ("access", "R"),
    ]
    assert observation in records[0].entity.split(" ")
    assert records[1].entity == observation
    assert records[2].entity == created["patient"]
    assert all("audit-me" not in r.entity + r.destination for r in records)
    assert all(r.agent == f"client:{caller.client_id}" for r in records)
