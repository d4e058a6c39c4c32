"""Telehealth sessions become one Encounter that gains versions as the session moves on."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.encounter import Encounter
from support.clients import Caller

SESSION = {
    "patient": {"system": "https://app.example/patients", "value": "t-1"},
    "practitioner": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
    "status": "planned",
    "modality": "video",
    "start": "2026-11-24T15:00:00Z",
    "platform": "ExampleVideo",
    "reason": "follow-up",
}


def _encounter(caller: Caller, reference: str, version: int | None = None) -> dict[str, Any]:
    url = f"/fhir/{reference}" + (f"/_history/{version}" if version else "")
    response = caller.get(url)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    Encounter.model_validate(body)
    return body


def test_session_lifecycle_versions_one_encounter(caller: Caller) -> None:
    created = caller.post("/v1/telehealth-sessions", json=SESSION)
    assert created.status_code == 201, created.text
    session = created.json()
    encounter_ref = session["encounter"]
    first = _encounter(caller, encounter_ref)
    assert first["class"]["code"] == "VR"
    assert first["status"] == "planned"
    assert first["subject"]["reference"] == session["patient"]
    assert first["meta"]["versionId"] == "1"

    moving = caller.patch(
        f"/v1/telehealth-sessions/{session['id']}", json={"status": "in-progress"}
    )
    assert moving.status_code == 200, moving.text
    done = caller.patch(
        f"/v1/telehealth-sessions/{session['id']}",
        json={"status": "finished", "end": "2026-11-24T15:40:00Z"},
    )
    assert done.status_code == 200
    current = _encounter(caller, encounter_ref)
    assert current["id"] == first["id"]
    assert current["meta"]["versionId"] == "3"
    assert current["status"] == "finished"
    assert current["period"]["end"].startswith("2026-11-24T15:40:00")
    assert _encounter(caller, encounter_ref, 1)["status"] == "planned"
    assert _encounter(caller, encounter_ref, 2)["status"] == "in-progress"
    assert caller.get(f"/fhir/{encounter_ref}/_history/9").status_code == 404
    response = caller.get(f"/fhir/{encounter_ref}")
    assert response.headers["etag"] == 'W/"3"'
    provenances = caller.get("/fhir/Provenance", params={"target": encounter_ref}).json()
    assert provenances["total"] == 3
    found = caller.get(
        "/fhir/Encounter", params={"patient": session["patient"], "status": "finished"}
    )
    assert found.json()["total"] == 1


def test_finished_session_cannot_go_back(caller: Caller) -> None:
    session = caller.post(
        "/v1/telehealth-sessions",
        json={**SESSION, "status": "finished", "end": "2026-11-24T15:30:00Z"},
    ).json()
    response = caller.patch(f"/v1/telehealth-sessions/{session['id']}", json={"status": "planned"})
    assert response.status_code == 409
    assert response.json()["issue"][0]["expression"] == ["status"]


def test_end_before_start_names_end(caller: Caller) -> None:
    response = caller.post(
        "/v1/telehealth-sessions", json={**SESSION, "end": "2026-11-24T14:00:00Z"}
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["end"]
    assert caller.get("/fhir/Encounter").json()["total"] == 0


def test_patch_naming_another_patient_is_refused(caller: Caller) -> None:
    session = caller.post("/v1/telehealth-sessions", json=SESSION).json()
    response = caller.patch(
        f"/v1/telehealth-sessions/{session['id']}",
        json={"patient": {"system": "https://app.example/patients", "value": "someone-else"}},
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["patient"]


def test_app_session_id_makes_retries_safe(caller: Caller) -> None:
    body = {**SESSION, "app_session_id": "sess-9"}
    one = caller.post("/v1/telehealth-sessions", json=body)
    two = caller.post("/v1/telehealth-sessions", json=body)
    assert (one.status_code, two.status_code) == (201, 200)
    assert one.json()["id"] == two.json()["id"]
    assert caller.get("/fhir/Encounter").json()["total"] == 1
