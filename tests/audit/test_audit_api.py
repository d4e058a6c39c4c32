"""AuditEvents and the access report through the FHIR API: admin only, valid FHIR, ids only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.builder_proofs import assert_valid
from support.clients import Caller, make_caller
from support.patient_data import phq9_answers, post_reports, report, tenant_id

from careloop.services.audit.models import AuditRecord


def _admin(app_client: TestClient, engine: Engine, caller: Caller) -> Caller:
    return make_caller(app_client, engine, "system/*.cruds careloop/admin", tenant=caller.tenant)


def _patient_seen(caller: Caller) -> tuple[str, str]:
    name = f"mrn-{uuid.uuid4().hex[:8]}"
    when = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    patient = post_reports(caller, [report(name, "phq-9", when, answers=phq9_answers(12))])
    assert caller.get(f"/fhir/Patient/{patient}").status_code == 200
    assert caller.get("/fhir/Observation", params={"patient": patient}).status_code == 200
    return name, patient


def test_audit_events_are_valid_fhir_and_searchable_by_patient(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    _, patient = _patient_seen(caller)
    admin = _admin(app_client, engine, caller)
    response = admin.get("/fhir/AuditEvent", params={"patient": patient})
    assert response.status_code == 200, response.text
    events = [e["resource"] for e in response.json()["entry"]]
    assert events
    for event in events:
        assert_valid(event)
        assert event["source"]["observer"]["display"] == "careloop"
        assert event["agent"][0]["requestor"] is True
    reads = [e for e in events if e["subtype"][0]["code"] == "read"]
    assert (
        reads and reads[0]["agent"][0]["who"]["identifier"]["value"] == f"client:{caller.client_id}"
    )
    assert {"reference": f"Patient/{patient}"} in [ent["what"] for ent in reads[0]["entity"]]
    by_agent = admin.get("/fhir/AuditEvent", params={"agent": "client:nobody"}).json()
    assert by_agent["total"] == 0
    future = admin.get("/fhir/AuditEvent", params={"date": "ge2999-01-01"}).json()
    assert future["total"] == 0


def test_access_report_lists_who_saw_the_patient(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    _, patient = _patient_seen(caller)
    admin = _admin(app_client, engine, caller)
    response = admin.get(f"/fhir/Patient/{patient}/$access-report")
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    kinds = {e["kind"] for e in entries}
    assert {"read", "search"} <= kinds
    assert {e["who"] for e in entries if e["kind"] in ("read", "search")} == {
        f"client:{caller.client_id}"
    }
    search = next(e for e in entries if e["kind"] == "search")
    assert all(ref.startswith("Observation/") for ref in search["what"])
    other = admin.get(f"/fhir/Patient/{uuid.uuid4().hex}/$access-report").json()
    assert other["entries"] == []


def test_only_administrators_see_the_audit_trail(caller: Caller) -> None:
    _, patient = _patient_seen(caller)
    assert caller.get("/fhir/AuditEvent").status_code == 403
    assert caller.get(f"/fhir/Patient/{patient}/$access-report").status_code == 403


def test_entries_hold_ids_never_identifiers(engine: Engine, caller: Caller) -> None:
    name, _ = _patient_seen(caller)
    with Session(engine) as session:
        rows = session.exec(
            select(AuditRecord).where(AuditRecord.tenant_id == tenant_id(engine, caller))
        ).all()
    assert rows
    for row in rows:
        assert name not in " ".join(str(v) for v in row.model_dump().values())


def test_reading_the_trail_is_itself_audited(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    _, patient = _patient_seen(caller)
    admin = _admin(app_client, engine, caller)
    assert admin.get("/fhir/AuditEvent", params={"patient": patient}).status_code == 200
    first = admin.get(f"/fhir/Patient/{patient}/$access-report").json()["entries"]
    # the search just made is listed; the report does not list itself
    assert (first[0]["who"], first[0]["kind"]) == (f"client:{admin.client_id}", "search")
    again = admin.get(f"/fhir/Patient/{patient}/$access-report").json()["entries"]
    newest = again[0]
    assert (newest["who"], newest["kind"], newest["what"]) == (
        f"client:{admin.client_id}",
        "read",
        [f"Patient/{patient}"],
    )
    assert again[1]["who"] == f"client:{admin.client_id}" and again[1]["kind"] == "search"
    with Session(engine) as session:
        mine = session.exec(
            select(AuditRecord).where(
                AuditRecord.tenant_id == tenant_id(engine, caller),
                AuditRecord.agent == f"client:{admin.client_id}",
                AuditRecord.kind == "access",
            )
        ).all()
    assert sorted(r.destination for r in mine) == [
        "$access-report",
        "$access-report",
        "search AuditEvent",
    ]
