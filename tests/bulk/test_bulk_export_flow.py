"""``$export`` end to end: kick-off, progress, manifest and NDJSON files at each level."""

from __future__ import annotations

from typing import Any

from bulk_helpers import (
    chunk,
    download,
    everything,
    finish,
    ids,
    job_of,
    kick_off,
    manifest,
    status_path,
)
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import BASE_URL, Caller, make_caller
from support.fhir_schema import r4_schema_errors
from support.reports import phq9

from careloop.services.bulk import ExportFile
from careloop.services.bulk.params import EXPORTABLE
from careloop.services.settings import Settings

PATIENTS = "https://app.example/patients"


def _session_body(*values: str) -> dict[str, Any]:
    return {
        "app_session_id": "grp-bulk",
        "facilitator": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
        "modality": "video",
        "status": "finished",
        "start": "2026-11-24T17:00:00Z",
        "end": "2026-11-24T18:00:00Z",
        "participants": [
            {"patient": {"system": PATIENTS, "value": v}, "attendance": "attended"} for v in values
        ],
    }


def _report(caller: Caller, value: str) -> dict[str, Any]:
    response = caller.post("/v1/symptom-reports", json=phq9(value))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _group(caller: Caller, *values: str) -> dict[str, Any]:
    response = caller.post("/v1/group-sessions", json=_session_body(*values))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _stored(caller: Caller, rtype: str) -> list[str]:
    bundle = caller.get(f"/fhir/{rtype}", params={"_count": "100"}).json()
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []))


def test_a_system_export_runs_in_chunks_and_its_files_hold_every_resource_once(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    for value in ("s-1", "s-2", "s-3"):
        _report(exporter, value)
    _group(exporter, "s-1", "s-4")
    kickoff = kick_off(exporter, _outputFormat="application/fhir+ndjson")
    outcome = kickoff.json()
    assert outcome["resourceType"] == "OperationOutcome" and not r4_schema_errors(outcome)

    polled = exporter.get(status_path(kickoff))
    assert polled.status_code == 202
    assert polled.headers["x-progress"] == f"0/{len(EXPORTABLE)} types"
    assert int(polled.headers["retry-after"]) > 0
    assert chunk(engine, bulk_settings, job_of(kickoff)) is False
    assert exporter.get(status_path(kickoff)).status_code == 202
    runs = 1 + finish(engine, bulk_settings, job_of(kickoff))
    assert runs > len(EXPORTABLE)  # two resources a file: several chunks for the bigger types

    body = manifest(exporter, kickoff)
    assert body["requiresAccessToken"] is True and body["error"] == []
    assert body["request"] == f"{BASE_URL}/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson"
    assert body["transactionTime"].endswith("Z")
    assert all(entry["count"] <= 2 for entry in body["output"])
    exported = everything(exporter, body)
    assert "AuditEvent" not in exported
    for rtype in ("Patient", "Observation", "QuestionnaireResponse", "Encounter", "Group"):
        assert sorted(ids(exported[rtype])) == _stored(exporter, rtype), rtype
        assert len(set(ids(exported[rtype]))) == len(exported[rtype])  # no line twice
    for resources in exported.values():
        for resource in resources:
            assert r4_schema_errors(resource) == [], resource["resourceType"]
    assert exporter.get(status_path(kickoff)).json() == body  # polling again: the same


def test_a_patient_export_holds_only_patients_and_their_resources(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    _report(exporter, "p-1")
    _group(exporter, "p-1", "p-2")
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Synthetic"}]}
    assert exporter.post("/fhir/Practitioner", json=practitioner).status_code == 201
    kickoff = kick_off(exporter, "/fhir/Patient/$export")
    finish(engine, bulk_settings, job_of(kickoff))
    exported = everything(exporter, manifest(exporter, kickoff))
    assert "Practitioner" not in exported and "Group" not in exported
    assert sorted(ids(exported["Patient"])) == _stored(exporter, "Patient")
    patients = {f"Patient/{p}" for p in ids(exported["Patient"])}
    for rtype in ("Observation", "QuestionnaireResponse"):
        assert {r["subject"]["reference"] for r in exported[rtype]} <= patients
    # the session's own Encounter names no patient: it stays out
    assert all("subject" in e for e in exported["Encounter"])


def test_a_group_export_holds_its_members_data_only(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    outsider = _report(exporter, "g-out")["patient"]
    session = _group(exporter, "g-1", "g-2")
    _report(exporter, "g-1")
    members = {p["patient"] for p in session["participants"]}
    kickoff = kick_off(exporter, f"/fhir/{session['group']}/$export", _type="Patient,Encounter")
    finish(engine, bulk_settings, job_of(kickoff))
    body = manifest(exporter, kickoff)
    exported = everything(exporter, body)
    assert set(exported) == {"Patient", "Encounter"}  # _type
    assert {f"Patient/{p}" for p in ids(exported["Patient"])} == members
    assert outsider not in {f"Patient/{p}" for p in ids(exported["Patient"])}
    assert {e["subject"]["reference"] for e in exported["Encounter"]} == members
    assert body["request"].endswith(f"/fhir/{session['group']}/$export?_type=Patient%2CEncounter")


def test_an_unknown_group_is_404(exporter: Caller) -> None:
    response = exporter.get("/fhir/Group/nope/$export", headers={"Prefer": "respond-async"})
    assert response.status_code == 404


def test_since_leaves_out_what_was_not_updated_after_it(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    _report(exporter, "old-1")
    first = kick_off(exporter, _type="Patient")
    finish(engine, bulk_settings, job_of(first))
    since = manifest(exporter, first)["transactionTime"]
    newer = _report(exporter, "new-1")["patient"]
    kickoff = kick_off(exporter, _type="Patient,Observation", _since=since)
    finish(engine, bulk_settings, job_of(kickoff))
    exported = everything(exporter, manifest(exporter, kickoff))
    assert [f"Patient/{p}" for p in ids(exported["Patient"])] == [newer]
    assert [o["subject"]["reference"] for o in exported["Observation"]] == [newer]


def test_a_cancelled_export_is_gone_its_files_deleted_its_work_stopped(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    for value in ("c-1", "c-2", "c-3"):
        _report(exporter, value)
    kickoff = kick_off(exporter, _type="Patient")
    job = job_of(kickoff)
    assert chunk(engine, bulk_settings, job) is False  # one file written
    with Session(engine) as session:
        assert session.exec(select(ExportFile).where(col(ExportFile.job_id) == job)).all()
    response = exporter.http.delete(status_path(kickoff), headers=exporter.headers)
    assert response.status_code == 202
    assert exporter.get(status_path(kickoff)).status_code == 404
    assert exporter.http.delete(status_path(kickoff), headers=exporter.headers).status_code == 404
    assert chunk(engine, bulk_settings, job) is True  # the worker sees the state and stops
    with Session(engine) as session:
        assert session.exec(select(ExportFile).where(col(ExportFile.job_id) == job)).all() == []


def test_another_client_sees_nothing_of_the_export(
    exporter: Caller, bulk_app: TestClient, engine: Engine, bulk_settings: Settings
) -> None:
    _report(exporter, "o-1")
    kickoff = kick_off(exporter, _type="Patient")
    finish(engine, bulk_settings, job_of(kickoff))
    [entry] = manifest(exporter, kickoff)["output"]
    same_tenant = make_caller(bulk_app, engine, tenant=exporter.tenant)
    other_tenant = make_caller(bulk_app, engine)
    for other in (same_tenant, other_tenant):
        assert other.get(status_path(kickoff)).status_code == 404
        assert other.get(entry["url"].removeprefix(BASE_URL)).status_code == 404
        assert other.http.delete(status_path(kickoff), headers=other.headers).status_code == 404
    assert len(download(exporter, entry["url"])) == 1  # still there for its owner


def test_files_of_unknown_numbers_types_or_unfinished_jobs_are_404(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    _report(exporter, "f-1")
    kickoff = kick_off(exporter, _type="Patient")
    job = job_of(kickoff)
    base = f"/fhir/$export-file/{job}"
    assert exporter.get(f"{base}/Patient/1").status_code == 404  # not finished yet
    finish(engine, bulk_settings, job)
    assert exporter.get(f"{base}/Patient/1").status_code == 200
    for path in ("Patient/2", "Patient/0", "Patient/x", "Nope/1", "Patient/99999999999"):
        assert exporter.get(f"{base}/{path}").status_code == 404, path
    assert exporter.get("/fhir/$export-status/" + "0" * 32).status_code == 404
    assert exporter.get("/fhir/$export-status/not-a-job").status_code == 404


def test_the_capability_statement_declares_the_bulk_data_exports(exporter: Caller) -> None:
    statement = exporter.get("/fhir/metadata").json()
    assert r4_schema_errors(statement) == []
    bulk = "http://hl7.org/fhir/uv/bulkdata"
    assert f"{bulk}/CapabilityStatement/bulk-data" in statement["instantiates"]
    [rest] = statement["rest"]
    assert {"name": "export", "definition": f"{bulk}/OperationDefinition/export"} in rest[
        "operation"
    ]
    operations = {r["type"]: r.get("operation", []) for r in rest["resource"]}
    assert operations["Patient"][0]["definition"].endswith("/patient-export")
    assert operations["Group"][0]["definition"].endswith("/group-export")
