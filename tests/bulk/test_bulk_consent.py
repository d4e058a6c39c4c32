"""Consent in bulk export: EHR sync's purpose, checked when files are written and downloaded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bulk_helpers import download, everything, finish, ids, job_of, kick_off, manifest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import BASE_URL, Caller, make_caller
from support.reports import phq9

from careloop.services.audit.models import AuditRecord
from careloop.services.settings import Settings
from careloop.workflows.web import create_app

SYSTEM = "https://app.example/patients"


def _patient(caller: Caller, value: str) -> str:
    response = caller.post("/v1/symptom-reports", json=phq9(value))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"])


def _decide(caller: Caller, value: str, decision: str) -> None:
    body = {"patient": {"system": SYSTEM, "value": value}, "decision": decision}
    response = caller.post("/v1/consents", json={**body, "purpose": "ehr-sync"})
    assert response.status_code == 201, response.text


def _egress(engine: Engine, client_id: str) -> list[AuditRecord]:
    with Session(engine) as session:
        query = select(AuditRecord).where(
            col(AuditRecord.kind) == "egress",
            col(AuditRecord.destination) == f"bulk-export:{client_id}",
        )
        return list(session.exec(query.order_by(col(AuditRecord.id))).all())


def _subjects(exported: dict[str, list[dict[str, Any]]], rtype: str) -> set[str]:
    return {r["subject"]["reference"] for r in exported.get(rtype, [])}


def test_a_patient_denying_ehr_sync_is_left_out_of_the_files(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    shared, private = _patient(exporter, "c-share"), _patient(exporter, "c-private")
    _decide(exporter, "c-private", "deny")
    kickoff = kick_off(exporter, _type="Patient,Observation,QuestionnaireResponse,Consent")
    finish(engine, bulk_settings, job_of(kickoff))
    exported = everything(exporter, manifest(exporter, kickoff))
    assert {f"Patient/{p}" for p in ids(exported["Patient"])} == {shared}
    assert private not in _subjects(exported, "Observation")
    assert _subjects(exported, "Observation") == {shared}
    assert _subjects(exported, "QuestionnaireResponse") == {shared}
    assert "Consent" not in exported  # the only Consent is the private patient's


def test_a_revocation_after_the_file_was_written_drops_its_lines_at_download(
    exporter: Caller, engine: Engine, bulk_settings: Settings, bulk_app: TestClient
) -> None:
    stays, leaves = _patient(exporter, "r-stays"), _patient(exporter, "r-leaves")
    kickoff = kick_off(exporter, _type="Patient,Observation")
    finish(engine, bulk_settings, job_of(kickoff))
    body = manifest(exporter, kickoff)
    [patients] = [e for e in body["output"] if e["type"] == "Patient"]
    [observations] = [e for e in body["output"] if e["type"] == "Observation"]
    assert patients["count"] == observations["count"] == 2
    _decide(exporter, "r-leaves", "deny")

    assert [f"Patient/{p['id']}" for p in download(exporter, patients["url"])] == [stays]
    kept = download(exporter, observations["url"])
    assert [o["subject"]["reference"] for o in kept] == [stays]

    records = _egress(engine, exporter.client_id)
    sent = [r for r in records if r.outcome == "success"]
    blocked = [r for r in records if r.outcome == "blocked"]
    assert len(sent) == len(blocked) == 2  # one record per patient per download
    assert all(r.purpose == "ehr-sync" for r in records)
    assert all(r.entity.split()[0] == stays for r in sent)
    assert {r.entity.split()[1] for r in sent} == {stays, f"Observation/{kept[0]['id']}"}
    assert all(r.entity.split()[0] == leaves for r in blocked)

    admin = make_caller(bulk_app, engine, "system/*.cruds careloop/admin", exporter.tenant)
    report = admin.get(f"/fhir/{stays}/$access-report")
    assert report.status_code == 200, report.text
    text = report.text
    assert f"bulk-export:{exporter.client_id}" in text


@pytest.fixture(scope="module")
def strict_app(bulk_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """careloop under the consent policy as shipped: no EHR sync without the patient's consent."""
    strict = bulk_settings.model_copy(update={"consent_defaults": ""})
    with TestClient(create_app(strict, engine), base_url=BASE_URL) as client:
        yield client


def test_under_the_shipped_policy_only_consenting_patients_and_shared_resources_go(
    strict_app: TestClient, engine: Engine, bulk_settings: Settings
) -> None:
    caller = make_caller(strict_app, engine)
    silent, consenting = _patient(caller, "q-silent"), _patient(caller, "q-yes")
    _decide(caller, "q-yes", "permit")
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Synthetic"}]}
    assert caller.post("/fhir/Practitioner", json=practitioner).status_code == 201
    kickoff = kick_off(caller, _type="Patient,Practitioner")
    strict = bulk_settings.model_copy(update={"consent_defaults": ""})
    finish(engine, strict, job_of(kickoff))
    exported = everything(caller, manifest(caller, kickoff))
    exported_patients = {f"Patient/{p}" for p in ids(exported["Patient"])}
    assert exported_patients == {consenting} and silent not in exported_patients
    assert len(exported["Practitioner"]) == 1  # no patient's data: not consent-gated
