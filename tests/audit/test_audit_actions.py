"""Alert acknowledgements and resolutions, FHIR and app API writes and admin routes each enter
the audit chain once, with ids only; the chain verifies and their AuditEvents are valid FHIR."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.builder_proofs import assert_valid
from support.clients import BASE_URL, Caller, make_caller
from support.clinicians import signed_in_browser
from support.patient_data import open_alert, tenant_id

from careloop.services.alerts.models import Alert
from careloop.services.audit.events import audit_event
from careloop.services.audit.models import AuditRecord
from careloop.services.audit.verify import verify_tenant
from careloop.services.settings import Settings

PLANTED = "Jane Plantedname"
"""A name sent where callers may write free text: it must never reach the audit trail."""
PLANTED_EMAIL = "jane.planted@example.org"


def _records(engine: Engine, tenant: str, after: int = 0) -> list[AuditRecord]:
    """The tenant's entries after ``seq`` ``after``, tokens left out, in chain order."""
    with Session(engine) as session:
        rows = session.exec(
            select(AuditRecord)
            .where(AuditRecord.tenant_id == tenant, col(AuditRecord.seq) > after)
            .where(AuditRecord.kind != "token")
            .order_by(col(AuditRecord.seq))
        ).all()
        return list(rows)


def _head(engine: Engine, tenant: str) -> int:
    rows = _records(engine, tenant)
    return rows[-1].seq or 0 if rows else 0


def _assert_clean(engine: Engine, tenant: str, records: list[AuditRecord]) -> None:
    """Valid AuditEvents, no planted PHI, and a chain that still verifies."""
    for record in records:
        assert_valid(audit_event(record))
        text = " ".join(
            [record.agent, record.entity, record.destination, record.purpose, record.kind]
        )
        assert PLANTED not in text and "Plantedname" not in text
        assert PLANTED_EMAIL not in text and "planted" not in text.lower()
    with Session(engine) as session:
        assert verify_tenant(session, tenant).problem is None


def _patient_of(caller: Caller) -> str:
    """A patient of the caller's tenant (made by a report), its id."""
    body = {
        "patient": {"system": "https://app.example/patients", "value": f"p-{uuid.uuid4().hex[:8]}"},
        "instrument": "phq-9",
        "answers": [1, 1, 0, 1, 0, 1, 0, 1, 0],
        "effective": "2026-11-20T09:30:00Z",
    }
    response = caller.post("/v1/symptom-reports", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]).removeprefix("Patient/")


def _alert(engine: Engine, settings: Settings, caller: Caller) -> tuple[str, Alert]:
    tenant = tenant_id(engine, caller)
    patient = _patient_of(caller)
    alert_id = open_alert(engine, settings, tenant, patient, f"rule-{uuid.uuid4().hex[:6]}", "high")
    with Session(engine) as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        return tenant, alert


def test_api_acknowledge_and_resolve_are_audited_once_each(
    engine: Engine, settings: Settings, caller: Caller
) -> None:
    tenant, alert = _alert(engine, settings, caller)
    before = _head(engine, tenant)
    planted = {"by": PLANTED, "note": f"Called {PLANTED} at {PLANTED_EMAIL}"}
    acked = caller.post(f"/v1/alerts/{alert.id}/acknowledge", json=planted)
    assert acked.status_code == 200, acked.text
    again = caller.post(f"/v1/alerts/{alert.id}/acknowledge", json=planted)
    assert again.status_code == 200  # already acknowledged: nothing changes, nothing audited
    resolved = caller.post(f"/v1/alerts/{alert.id}/resolve", json=planted)
    assert resolved.status_code == 200, resolved.text
    records = _records(engine, tenant, before)
    assert [(r.kind, r.action, r.agent, r.outcome) for r in records] == [
        ("alert-ack", "U", f"client:{caller.client_id}", "success"),
        ("alert-resolve", "U", f"client:{caller.client_id}", "success"),
    ]
    for record in records:
        refs = record.entity.split(" ")
        assert f"Patient/{alert.patient_id}" in refs and f"Task/{alert.task_id}" in refs
    event = audit_event(records[0])
    assert event["type"]["code"] == "rest" and event["subtype"][0]["code"] == "update"
    _assert_clean(engine, tenant, records)


def test_dashboard_acknowledgement_names_the_clinician(
    app_client: TestClient, engine: Engine, settings: Settings, caller: Caller
) -> None:
    tenant, alert = _alert(engine, settings, caller)
    clinician = signed_in_browser(engine, tenant, name=PLANTED)
    before = _head(engine, tenant)
    with TestClient(app_client.app, base_url=BASE_URL, cookies=clinician.cookies) as browser:
        acked = browser.post(
            f"/alerts/{alert.id}/acknowledge",
            data={"csrf_token": clinician.csrf_token, "note": f"Spoke to {PLANTED}"},
            follow_redirects=False,
        )
    assert acked.status_code == 303, acked.text
    [record] = _records(engine, tenant, before)
    assert (record.kind, record.agent) == ("alert-ack", f"clinician:{clinician.clinician_id}")
    assert f"Patient/{alert.patient_id}" in record.entity.split(" ")
    _assert_clean(engine, tenant, [record])


def test_fhir_task_update_is_audited_as_the_client_not_the_owner(
    engine: Engine, settings: Settings, caller: Caller
) -> None:
    tenant, alert = _alert(engine, settings, caller)
    task: dict[str, Any] = caller.get(f"/fhir/Task/{alert.task_id}").json()
    before = _head(engine, tenant)
    body = {**task, "status": "completed", "owner": {"reference": "Practitioner/dr-7"}}
    body["note"] = [{"text": f"Done with {PLANTED}"}]
    response = caller.http.put(f"/fhir/Task/{alert.task_id}", json=body, headers=caller.headers)
    assert response.status_code == 200, response.text
    [record] = _records(engine, tenant, before)  # the Task's own write is the resolution's
    assert (record.kind, record.agent) == ("alert-resolve", f"client:{caller.client_id}")
    _assert_clean(engine, tenant, [record])


def test_app_api_writes_are_one_entry_per_unit_of_work(engine: Engine, caller: Caller) -> None:
    tenant = tenant_id(engine, caller)
    before = _head(engine, tenant)
    value = f"{PLANTED} {uuid.uuid4().hex[:6]}"
    body = {
        "patient": {"system": "https://app.example/patients", "value": value},
        "instrument": "phq-9",
        "answers": [1, 1, 0, 1, 0, 1, 0, 1, 0],
        "effective": "2026-11-20T09:30:00Z",
        "app_report_id": f"{PLANTED_EMAIL}-1",
    }
    created = caller.post("/v1/symptom-reports", json=body)
    assert created.status_code == 201, created.text
    retried = caller.post("/v1/symptom-reports", json=body)
    assert retried.status_code == 200  # the stored result, not audited again
    signal = {
        "patient": body["patient"],
        "source": "chatbot",
        "category": "crisis",
        "level": "moderate",
        "model": {"name": "ExampleSafetyClassifier", "version": "2.1.0"},
        "detected": "2026-11-20T09:30:00Z",
    }
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    assert caller.post("/v1/risk-signals", json=signal, headers=key).status_code == 201
    assert caller.post("/v1/risk-signals", json=signal, headers=key).status_code == 201  # replay
    records = _records(engine, tenant, before)
    assert [(r.kind, r.action, r.agent) for r in records] == [
        ("create", "C", f"client:{caller.client_id}"),
        ("create", "C", f"client:{caller.client_id}"),
    ]
    patient = created.json()["patient"]
    report_refs = records[0].entity.split(" ")
    assert report_refs[0] == patient
    assert set(created.json()["resources"]) <= set(report_refs)
    signal_refs = records[1].entity.split(" ")
    assert signal_refs[0] == patient and any(r.startswith("RiskAssessment/") for r in signal_refs)
    event = audit_event(records[0])
    assert event["subtype"][0]["code"] == "create"
    _assert_clean(engine, tenant, records)


def _care_plan(patient: str, title: str) -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": title,
        "subject": {"reference": patient},
    }


def test_fhir_creates_updates_and_bundles_are_audited(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    tenant = tenant_id(engine, caller)
    patient = f"Patient/{_patient_of(caller)}"
    before = _head(engine, tenant)
    made = caller.post("/fhir/CarePlan", json=_care_plan(patient, f"Plan for {PLANTED}"))
    assert made.status_code == 201, made.text
    plan = made.json()
    changed = caller.http.put(
        f"/fhir/CarePlan/{plan['id']}",
        json={**plan, "title": f"Plan v2 for {PLANTED}"},
        headers=caller.headers,
    )
    assert changed.status_code == 200, changed.text
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _care_plan(patient, f"Bundle plan {n}"),
                "request": {"method": "POST", "url": "CarePlan"},
            }
            for n in range(3)
        ],
    }
    posted = caller.post("/fhir", json=bundle)
    assert posted.status_code == 200, posted.text
    records = _records(engine, tenant, before)
    assert [(r.kind, r.action) for r in records] == [
        ("create", "C"),
        ("update", "U"),
        ("create", "C"),
    ]
    plan_ref = f"CarePlan/{plan['id']}"
    first, rest = records[0].entity.split(" ")[:2], records[0].entity.split(" ")[2:]
    assert first == [patient, plan_ref] and all(r.startswith("Provenance/") for r in rest)
    assert records[1].entity.split(" ") == [patient, plan_ref]
    bundled = records[2].entity.split(" ")
    assert bundled[0] == patient and sum(r.startswith("CarePlan/") for r in bundled) == 3
    _assert_clean(engine, tenant, records)
    # The patient's access report shows the writes and an acknowledgement of theirs.
    admin = make_caller(app_client, engine, "system/*.cruds careloop/admin", tenant=caller.tenant)
    report = admin.get(f"{patient.replace('Patient/', '/fhir/Patient/')}/$access-report")
    assert report.status_code == 200, report.text
    kinds = [entry["kind"] for entry in report.json()["entries"]]
    assert kinds.count("create") >= 3 and "update" in kinds


def test_access_report_lists_an_acknowledgement(
    app_client: TestClient, engine: Engine, settings: Settings, caller: Caller
) -> None:
    _, alert = _alert(engine, settings, caller)
    assert caller.post(f"/v1/alerts/{alert.id}/acknowledge").status_code == 200
    admin = make_caller(app_client, engine, "system/*.cruds careloop/admin", tenant=caller.tenant)
    report = admin.get(f"/fhir/Patient/{alert.patient_id}/$access-report")
    assert report.status_code == 200, report.text
    entries = report.json()["entries"]
    acks = [e for e in entries if e["kind"] == "alert-ack"]
    assert len(acks) == 1 and acks[0]["who"] == f"client:{caller.client_id}"
    assert f"Task/{alert.task_id}" in acks[0]["what"]
    assert "create" in [e["kind"] for e in entries]  # the report that made the patient


def test_route_creation_is_an_admin_entry_without_the_address(
    engine: Engine, caller: Caller
) -> None:
    tenant = tenant_id(engine, caller)
    before = _head(engine, tenant)
    route = {
        "recipient": "Practitioner/dr-9",
        "channel": "email",
        "address": PLANTED_EMAIL,
    }
    response = caller.post("/v1/notification-routes", json=route)
    assert response.status_code == 201, response.text
    [record] = _records(engine, tenant, before)
    assert (record.kind, record.agent, record.outcome) == (
        "admin",
        f"client:{caller.client_id}",
        "success",
    )
    assert record.entity.split(" ") == [
        "api:notification-routes.create",
        f"route:{response.json()['id']}",
        "Practitioner/dr-9",
    ]
    assert audit_event(record)["type"]["code"] == "110100"
    _assert_clean(engine, tenant, [record])


def test_ehr_admin_calls_are_admin_entries_with_ids(
    app_client: TestClient, engine: Engine, caller: Caller
) -> None:
    admin = make_caller(app_client, engine, "system/*.cruds careloop/admin", tenant=caller.tenant)
    tenant = tenant_id(engine, caller)
    patient = f"Patient/{_patient_of(caller)}"
    before = _head(engine, tenant)
    connection = {
        "name": "hospital",
        "fhir_base_url": "https://ehr.example/fhir",
        "client_id": "careloop",
        "scope": "system/Observation.cruds",
    }
    made = admin.post("/admin/ehr-connections", json=connection)
    assert made.status_code == 201, made.text
    link = {"ehr": "hospital", "patient": patient, "ehr_patient": "Patient/ehr-77"}
    assert admin.post("/admin/patient-links", json=link).status_code == 201
    removed = admin.http.delete("/admin/ehr-connections/hospital", headers=admin.headers)
    assert removed.status_code == 204
    records = _records(engine, tenant, before)
    ehr = f"ehr:{made.json()['id']}"
    assert [(r.kind, r.agent, r.entity) for r in records] == [
        ("admin", f"client:{admin.client_id}", f"api:ehr-connections.create {ehr}"),
        ("admin", f"client:{admin.client_id}", f"api:patient-links.create {ehr} {patient}"),
        ("admin", f"client:{admin.client_id}", f"api:ehr-connections.remove {ehr}"),
    ]
    assert all("ehr-77" not in r.entity for r in records)  # the EHR's own id of the patient
    _assert_clean(engine, tenant, records)


def test_ehr_task_pull_and_cds_actors_are_named_by_id_only(
    engine: Engine, settings: Settings, caller: Caller
) -> None:
    from careloop.fhir.identifiers import business_identifier
    from careloop.services.alerts.service import audit_agent
    from careloop.services.ehr.models import EhrConnection
    from careloop.services.unit_of_work import session_scope
    from careloop.workflows.ehr.task_status import apply_task_status

    assert audit_agent("ehr:hospital:Practitioner/ehr-9") == "ehr:hospital"
    assert audit_agent("cds:https://ehr.example/cds") == "cds:https://ehr.example/cds"
    assert audit_agent("Practitioner/dr-1") == "Practitioner/dr-1"
    assert audit_agent(PLANTED) == "unknown" and audit_agent(PLANTED_EMAIL) == "unknown"
    tenant, alert = _alert(engine, settings, caller)
    before = _head(engine, tenant)
    task = {
        "identifier": [{"system": business_identifier("task", "x")["system"], "value": alert.id}],
        "status": "accepted",
        "owner": {"reference": f"Practitioner/{PLANTED}"},
    }
    connection = EhrConnection(id=str(uuid.uuid4()), tenant_id=tenant, name="hospital")
    with session_scope(engine) as session:
        assert apply_task_status(session, connection, [task]) == 1
    [record] = _records(engine, tenant, before)
    assert (record.kind, record.agent) == ("alert-ack", "ehr:hospital")
    _assert_clean(engine, tenant, [record])
