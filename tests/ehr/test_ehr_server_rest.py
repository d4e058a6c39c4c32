"""The test EHR's FHIR R4 REST semantics, over real HTTP with SMART tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from ehr_server import TestEHR
from ehr_server.helpers import issue_token

SYSTEM = "urn:careloop:test"
Client = Callable[[str], httpx.Client]


@pytest.fixture
def client_for(ehr: TestEHR) -> Iterator[Client]:
    """Make HTTP clients authorised with the given scopes."""
    opened: list[httpx.Client] = []

    def make(scope: str) -> httpx.Client:
        token = issue_token(ehr, scope)
        client = httpx.Client(
            base_url=ehr.base_url,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
            timeout=10,
            trust_env=False,
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def fhir(client_for: Client) -> httpx.Client:
    return client_for("system/*.cruds")


@pytest.fixture
def patient(ehr: TestEHR) -> dict[str, Any]:
    return ehr.seed({"resourceType": "Patient", "name": [{"family": "Synthetic"}]})


def identifier(value: str) -> dict[str, str]:
    return {"system": SYSTEM, "value": value}


def observation(patient_id: str, ident: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueInteger": 7,
    }
    if ident:
        resource["identifier"] = [identifier(ident)]
    return {**resource, **extra}


def test_create_read_update_vread(fhir: httpx.Client, patient: dict[str, Any]) -> None:
    created = fhir.post("Observation", json=observation(patient["id"], "o-1"))

    assert created.status_code == 201
    assert created.headers["content-type"] == "application/fhir+json"
    assert created.headers["etag"] == 'W/"1"'
    body = created.json()
    assert created.headers["location"] == f"{fhir.base_url}Observation/{body['id']}/_history/1"
    assert body["meta"]["versionId"] == "1"
    read = fhir.get(f"Observation/{body['id']}")
    assert read.json() == body
    assert read.headers["etag"] == 'W/"1"'

    updated = fhir.put(f"Observation/{body['id']}", json={**body, "valueInteger": 9})

    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'
    assert fhir.get(f"Observation/{body['id']}/_history/1").json()["valueInteger"] == 7
    assert fhir.get(f"Observation/{body['id']}").json()["valueInteger"] == 9
    history = fhir.get(f"Observation/{body['id']}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_if_match_protects_against_lost_updates(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    body = fhir.post("Observation", json=observation(patient["id"])).json()
    url = f"Observation/{body['id']}"
    assert fhir.put(url, json=body, headers={"If-Match": 'W/"1"'}).status_code == 200

    stale = fhir.put(url, json=body, headers={"If-Match": 'W/"1"'})

    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert len(ehr.history("Observation", body["id"])) == 2


def test_update_as_create_and_id_mismatch(fhir: httpx.Client, patient: dict[str, Any]) -> None:
    created = fhir.put(
        "Observation/chosen-id", json={**observation(patient["id"]), "id": "chosen-id"}
    )
    mismatch = fhir.put("Observation/chosen-id", json={**observation(patient["id"]), "id": "other"})

    assert created.status_code == 201
    assert created.json()["id"] == "chosen-id"
    assert mismatch.status_code == 400


def test_media_types_are_enforced(fhir: httpx.Client, patient: dict[str, Any]) -> None:
    as_text = fhir.post(
        "Observation",
        content=httpx.Response(200, json=observation(patient["id"])).content,
        headers={"Content-Type": "text/plain"},
    )
    plain_json = fhir.post(
        "Observation", json=observation(patient["id"]), headers={"Content-Type": "application/json"}
    )
    xml = fhir.get("Observation", headers={"Accept": "application/fhir+xml"})

    assert as_text.status_code == 415
    assert plain_json.status_code == 201
    assert xml.status_code == 406


def test_invalid_resource_is_400_naming_the_element(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    missing_code = observation(patient["id"])
    del missing_code["code"]

    responses = [
        fhir.post("Observation", json=missing_code),
        fhir.post("Observation", json=observation(patient["id"], status="done")),
        fhir.post("Observation", json=observation(patient["id"], valueInteger="seven")),
        fhir.post("Observation", json=observation(patient["id"], colour="blue")),
        fhir.post("Observation", content=b"{not json"),
        fhir.post("Observation", json={**observation(patient["id"]), "resourceType": "Patient"}),
    ]

    assert [r.status_code for r in responses] == [400] * 6
    expressions = [r.json()["issue"][0].get("expression") for r in responses[:4]]
    assert expressions == [
        ["Observation.code"],
        ["Observation.status"],
        ["Observation.valueInteger"],
        ["Observation.colour"],
    ]
    assert ehr.resources("Observation") == []


def test_unknown_type_is_404(fhir: httpx.Client) -> None:
    assert fhir.get("Spaceship").status_code == 404
    assert fhir.post("Spaceship", json={"resourceType": "Spaceship"}).status_code == 404


def test_dangling_patient_reference_is_refused(ehr: TestEHR, fhir: httpx.Client) -> None:
    response = fhir.post("Observation", json=observation("no-such-patient"))

    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Observation.subject"]
    assert ehr.resources("Observation") == []


def test_scopes_are_enforced_per_interaction(
    client_for: Client, patient: dict[str, Any], ehr: TestEHR
) -> None:
    reader = client_for("system/Observation.rs")
    creator = client_for("system/Observation.c")
    existing = ehr.seed(observation(patient["id"]))

    assert reader.get("Observation").status_code == 200
    assert reader.get(f"Observation/{existing['id']}").status_code == 200
    assert reader.get("Patient").status_code == 403
    assert reader.post("Observation", json=observation(patient["id"])).status_code == 403
    assert creator.post("Observation", json=observation(patient["id"])).status_code == 201
    assert creator.get("Observation").status_code == 403
    assert creator.get(f"Observation/{existing['id']}").status_code == 403
    assert creator.put(f"Observation/{existing['id']}", json=existing).status_code == 403


def test_conditional_create_with_zero_one_and_two_matches(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    condition = {"If-None-Exist": f"identifier={SYSTEM}|report-1"}

    first = fhir.post("Observation", json=observation(patient["id"], "report-1"), headers=condition)
    again = fhir.post("Observation", json=observation(patient["id"], "report-1"), headers=condition)
    ehr.seed(observation(patient["id"], "report-1"))
    ambiguous = fhir.post(
        "Observation", json=observation(patient["id"], "report-1"), headers=condition
    )

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert ambiguous.status_code == 412
    assert len(ehr.resources("Observation")) == 2  # one created, one seeded


def test_conditional_update(ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]) -> None:
    url = f"Observation?identifier={SYSTEM}|cu-1"

    created = fhir.put(url, json=observation(patient["id"], "cu-1"))
    updated = fhir.put(url, json=observation(patient["id"], "cu-1", valueInteger=12))
    ehr.seed(observation(patient["id"], "cu-1"))
    ambiguous = fhir.put(url, json=observation(patient["id"], "cu-1"))

    assert created.status_code == 201
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.json()["valueInteger"] == 12
    assert ambiguous.status_code == 412


def test_search_by_identifier_patient_and_status(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    other = ehr.seed({"resourceType": "Patient"})
    ehr.seed(observation(patient["id"], "a"))
    ehr.seed(observation(patient["id"], "b", status="amended"))
    ehr.seed(observation(other["id"], "c"))

    def ids(**params: str) -> list[str]:
        bundle = fhir.get("Observation", params=params).json()
        assert bundle["type"] == "searchset"
        assert bundle["total"] == len(bundle.get("entry", []))
        return sorted(e["resource"]["identifier"][0]["value"] for e in bundle.get("entry", []))

    assert ids(identifier=f"{SYSTEM}|b") == ["b"]
    assert ids(identifier="c") == ["c"]
    assert ids(identifier="urn:other|a") == []
    assert ids(patient=patient["id"]) == ["a", "b"]
    assert ids(subject=f"Patient/{other['id']}") == ["c"]
    assert ids(patient=patient["id"], status="final") == ["a"]
    assert ids(status="final,amended") == ["a", "b", "c"]
    assert fhir.get("Observation", params={"colour": "blue"}).status_code == 400


def test_incremental_search_with_last_updated(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    first = fhir.post("Observation", json=observation(patient["id"], "1")).json()
    second = fhir.post("Observation", json=observation(patient["id"], "2")).json()
    since = first["meta"]["lastUpdated"]

    newer = fhir.get("Observation", params={"_lastUpdated": f"gt{since}"}).json()
    from_first = fhir.get("Observation", params={"_lastUpdated": f"ge{since}"}).json()
    before = fhir.get("Observation", params={"_lastUpdated": f"lt{since}"}).json()
    unencoded_plus = fhir.get("Observation?_lastUpdated=gt2024-01-01T00:00:00+00:00")

    assert [e["resource"]["id"] for e in newer["entry"]] == [second["id"]]
    assert from_first["total"] == 2
    assert before["total"] == 0
    assert unencoded_plus.status_code == 400


def test_paging_with_count_and_next_links(ehr: TestEHR, fhir: httpx.Client) -> None:
    for index in range(5):
        ehr.seed({"resourceType": "Patient", "identifier": [identifier(f"p{index}")]})

    seen: list[str] = []
    url: str | None = f"{fhir.base_url}Patient?_count=2"
    while url is not None:
        bundle = fhir.get(url).json()
        assert bundle["total"] == 5
        seen += [e["resource"]["identifier"][0]["value"] for e in bundle.get("entry", [])]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)

    assert seen == ["p0", "p1", "p2", "p3", "p4"]


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post_entry(
    resource: dict[str, Any], full_url: str | None = None, **request: str
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def test_transaction_rewrites_urn_uuid_references(ehr: TestEHR, fhir: httpx.Client) -> None:
    patient_urn, qr_urn = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = transaction(
        post_entry(
            {
                "resourceType": "QuestionnaireResponse",
                "status": "completed",
                "subject": {"reference": patient_urn},
            },
            qr_urn,
        ),
        post_entry(
            observation(
                "x", "t-1", subject={"reference": patient_urn}, derivedFrom=[{"reference": qr_urn}]
            )
        ),
        post_entry({"resourceType": "Patient", "identifier": [identifier("pt-1")]}, patient_urn),
    )

    response = fhir.post("", json=bundle)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created"] * 3
    patient_id = ehr.resources("Patient")[0]["id"]
    qr_id = ehr.resources("QuestionnaireResponse")[0]["id"]
    stored = ehr.resources("Observation")[0]
    assert stored["subject"] == {"reference": f"Patient/{patient_id}"}
    assert stored["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr_id}"}]
    assert result["entry"][2]["response"]["location"].startswith(
        f"{ehr.base_url}/Patient/{patient_id}"
    )
    assert result["entry"][0]["response"]["etag"] == 'W/"1"'


def test_transaction_is_atomic(ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]) -> None:
    invalid = observation(patient["id"], "bad")
    del invalid["code"]
    bundle = transaction(post_entry(observation(patient["id"], "good")), post_entry(invalid))
    dangling = transaction(
        post_entry(observation(patient["id"], "good")), post_entry(observation("ghost", "bad"))
    )

    response = fhir.post("", json=bundle)
    response_dangling = fhir.post("", json=dangling)

    assert response.status_code == 400
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert response_dangling.status_code == 422
    assert ehr.resources("Observation") == []


def test_transaction_with_one_forbidden_entry_is_refused_whole(
    ehr: TestEHR, client_for: Client, patient: dict[str, Any]
) -> None:
    writer = client_for("system/Observation.cruds")
    bundle = transaction(
        post_entry(observation(patient["id"], "ok")),
        post_entry({"resourceType": "Task", "status": "requested", "intent": "order"}),
    )

    response = writer.post("", json=bundle)

    assert response.status_code == 403
    assert ehr.resources("Observation") == []
    assert ehr.resources("Task") == []


def test_transaction_conditional_entries(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    existing = ehr.seed(observation(patient["id"], "dup"))
    bundle = transaction(
        post_entry(observation(patient["id"], "dup"), ifNoneExist=f"identifier={SYSTEM}|dup"),
        {
            "resource": observation(patient["id"], "upd"),
            "request": {"method": "PUT", "url": f"Observation?identifier={SYSTEM}|upd"},
        },
    )

    first = fhir.post("", json=bundle).json()
    second = fhir.post("", json=bundle).json()

    assert [e["response"]["status"] for e in first["entry"]] == ["200 OK", "201 Created"]
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK", "200 OK"]
    assert first["entry"][0]["resource"]["id"] == existing["id"]
    assert len(ehr.resources("Observation")) == 2


def test_batch_entries_are_independent(
    ehr: TestEHR, fhir: httpx.Client, patient: dict[str, Any]
) -> None:
    invalid = observation(patient["id"], "bad", status="nonsense")
    bundle = transaction(
        post_entry(observation(patient["id"], "good")),
        post_entry(invalid),
        {"request": {"method": "GET", "url": f"Patient/{patient['id']}"}},
        kind="batch",
    )

    response = fhir.post("", json=bundle)

    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "batch-response"
    assert [e["response"]["status"] for e in result["entry"]] == [
        "201 Created",
        "400 Bad Request",
        "200 OK",
    ]
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert [o["identifier"][0]["value"] for o in ehr.resources("Observation")] == ["good"]


def test_seed_resources_and_history_helpers(ehr: TestEHR) -> None:
    seeded = ehr.seed({"resourceType": "Patient", "id": "p1"})
    ehr.seed({**seeded, "active": True})

    assert seeded["meta"]["versionId"] == "1"
    assert [p["active"] for p in ehr.resources("Patient")] == [True]
    assert [v["meta"]["versionId"] for v in ehr.history("Patient", "p1")] == ["1", "2"]
