"""The ``$export`` kick-off: headers, parameters and limits, each refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest
from bulk_helpers import ASYNC, job_of, kick_off
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import Caller, make_caller
from support.outbox import tenant_messages

from careloop.services.audit.models import AuditRecord
from careloop.services.bulk import ExportJob
from careloop.services.bulk.params import EXPORTABLE


def _refusal(response: Any, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert field in body["issue"][0].get("expression", []), body


def test_without_prefer_respond_async_it_is_400_naming_prefer(exporter: Caller) -> None:
    _refusal(exporter.get("/fhir/$export"), 400, "Prefer")
    _refusal(exporter.get("/fhir/$export", headers={"Prefer": "return=minimal"}), 400, "Prefer")
    both = {"Prefer": "handling=lenient, respond-async"}
    assert exporter.get("/fhir/$export", headers=both).status_code == 202


def test_an_accept_other_than_fhir_json_is_406_naming_accept(exporter: Caller) -> None:
    refused = exporter.get("/fhir/$export", headers={**ASYNC, "Accept": "text/html"})
    _refusal(refused, 406, "Accept")
    fhir = {**ASYNC, "Accept": "application/fhir+json"}
    assert exporter.get("/fhir/Patient/$export", headers=fhir).status_code == 202


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"_outputFormat": "text/csv"}, "_outputFormat"),
        ({"_since": "yesterday"}, "_since"),
        ({"_since": "2026-01-01"}, "_since"),  # a date, not an instant
        ({"_since": "2026-13-01T00:00:00Z"}, "_since"),
        ({"_since": "0001-01-01T00:00:00+01:00"}, "_since"),
        ({"_type": "Unicorn"}, "_type"),
        ({"_type": "Patient,"}, "_type"),
        ({"_type": "AuditEvent"}, "_type"),
        ({"_typeFilter": "Observation?code=x"}, "_typeFilter"),
        ({"_elements": "id"}, "_elements"),
        ({"patient": "Patient/1"}, "patient"),
        ({"includeAssociatedData": "LatestProvenanceResources"}, "includeAssociatedData"),
        ({"_type": "Patient" + ",Patient" * 500}, "_type"),  # over the length cap
    ],
)
def test_a_bad_or_unsupported_parameter_is_400_naming_it(
    exporter: Caller, params: dict[str, str], field: str
) -> None:
    _refusal(exporter.get("/fhir/$export", params=params, headers=ASYNC), 400, field)


def test_a_parameter_given_twice_is_400(exporter: Caller) -> None:
    twice = [("_since", "2026-01-01T00:00:00Z"), ("_since", "2026-02-01T00:00:00Z")]
    _refusal(exporter.get("/fhir/$export", params=twice, headers=ASYNC), 400, "_since")


def test_lenient_handling_ignores_unsupported_parameters_and_says_so(exporter: Caller) -> None:
    headers = {"Prefer": "respond-async, handling=lenient"}
    response = exporter.get(
        "/fhir/$export", params={"_typeFilter": "x", "_elements": "id"}, headers=headers
    )
    assert response.status_code == 202, response.text
    warned = [i["expression"] for i in response.json()["issue"] if i["severity"] == "warning"]
    assert warned == [["_typeFilter"], ["_elements"]]


def test_types_the_token_does_not_cover_are_403_and_left_out_by_default(
    bulk_app: TestClient, engine: Engine
) -> None:
    narrow = make_caller(bulk_app, engine, scope="system/Patient.read system/Observation.rs")
    refused = narrow.get("/fhir/$export", params={"_type": "Patient,Encounter"}, headers=ASYNC)
    _refusal(refused, 403, "_type")
    kickoff = kick_off(narrow)
    with Session(engine) as session:
        job = session.get(ExportJob, job_of(kickoff))
        assert job is not None and job.types == "Observation,Patient"
    writer = make_caller(bulk_app, engine, scope="system/Observation.c")
    assert writer.get("/fhir/$export", headers=ASYNC).status_code == 403
    group = narrow.get("/fhir/Group/g/$export", headers=ASYNC)
    assert group.status_code == 403  # a Group export reads the Group


def test_a_client_with_too_many_running_exports_is_told_to_wait(exporter: Caller) -> None:
    for _ in range(3):  # bulk_export_max_active_jobs
        kick_off(exporter)
    refused = exporter.get("/fhir/$export", headers=ASYNC)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0


def test_the_kick_off_records_its_job_event_and_audit_together(
    exporter: Caller, engine: Engine
) -> None:
    kickoff = kick_off(exporter, _type="Patient")
    job = job_of(kickoff)
    [message] = tenant_messages(engine, exporter.tenant)
    assert message.task == "export.requested" and job in message.payload
    with Session(engine) as session:
        stored = session.get(ExportJob, job)
        assert stored is not None and stored.client_id == exporter.client_id
        audit = session.exec(
            select(AuditRecord).where(
                col(AuditRecord.kind) == "export", col(AuditRecord.entity) == f"export:{job}"
            )
        ).one()
        assert audit.agent == f"client:{exporter.client_id}" and audit.outcome == "success"


def test_every_type_careloop_serves_but_the_audit_trail_is_exportable() -> None:
    assert "AuditEvent" not in EXPORTABLE
    assert {"Patient", "Observation", "Group", "Practitioner", "Consent"} <= set(EXPORTABLE)
