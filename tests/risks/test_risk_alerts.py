"""Risk signals end to end: rule engine, alert, webhook, EHR Task, CDS card and dashboard.

Outbox work runs in-process (``run_pending``: the functions the Celery tasks call), on SQLite and
PostgreSQL as every API test does.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from cds.cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from risk_bodies import signal
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.clients import Caller
from support.clinicians import signed_in_browser
from support.outbox import tenant_messages
from webhook_receiver import Receiver

from careloop.services.cds.jwks import CACHE
from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.workflows.routing import event_router
from careloop.workflows.rules.program import load_program
from careloop.workflows.task_names import TaskName

Drain = Callable[[], Any]


def _alerts(caller: Caller) -> list[dict[str, Any]]:
    response = caller.get("/v1/alerts")
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def _post(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    response = caller.post("/v1/risk-signals", json=body)
    assert response.status_code in (200, 201), response.text
    created: dict[str, Any] = response.json()
    return created


def test_high_self_harm_is_a_critical_alert_delivered_to_the_care_team(
    caller: Caller, oncall: Receiver, drain: Drain, engine: Engine
) -> None:
    created = _post(caller, signal("rs-e2e", app_signal_id="e2e-1"))
    assessment = created["resources"][0]
    [message] = [m for m in tenant_messages(engine, caller.tenant) if m.task == "reading.created"]
    payload = orjson.loads(message.payload)
    assert payload["observation_id"] == assessment
    assert payload["urgent"] is True  # triaged when recorded: the urgent queue
    drain()
    [alert] = _alerts(caller)
    assert (alert["severity"], alert["rule"], alert["patient"]) == (
        "critical",
        "risk-suicide",
        created["patient"],
    )
    assert alert["observation"] == assessment
    assert alert["explanation"]["values"] == {"category": "self-harm", "level": "high"}
    assert alert["explanation"]["threshold"] == {"at_least": "high"}
    [delivery] = oncall.wait_for(1)
    body = delivery["body"]
    assert body["alert"]["id"] == alert["id"] and body["severity"] == "critical"
    assert body["patient"] == created["patient"]
    assert "ExampleSafetyClassifier" not in orjson.dumps(body).decode()
    task = caller.get(f"/fhir/{alert['task']}").json()
    assert (task["status"], task["priority"]) == ("requested", "stat")
    assert task["focus"]["reference"] == assessment
    communications = caller.get("/fhir/Communication", params={"about": alert["task"]}).json()
    assert communications["total"] == 1
    assert communications["entry"][0]["resource"]["about"][1]["reference"] == assessment


def test_a_retried_signal_opens_one_alert(caller: Caller, oncall: Receiver, drain: Drain) -> None:
    body = signal("rs-retry", "suicidal-ideation", app_signal_id="retry-1")
    first = _post(caller, body)
    drain()
    results: list[Any] = []

    def post() -> None:
        results.append(caller.post("/v1/risk-signals", json=body))

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200, 200]
    assert all(r.json() == first for r in results)
    drain()
    [alert] = _alerts(caller)
    assert alert["occurrences"] == 1 and alert["severity"] == "critical"
    assert len(oncall.wait_for(1)) == 1


def test_defaults_by_category_and_level(caller: Caller, drain: Drain) -> None:
    expected = {
        ("self-harm", "low"): None,
        ("self-harm", "moderate"): ("high", "risk-suicide"),
        ("suicidal-ideation", "high"): ("critical", "risk-suicide"),
        ("crisis", "moderate"): None,
        ("crisis", "high"): ("critical", "risk-crisis"),
        ("substance-use", "moderate"): None,
        ("substance-use", "high"): ("warning", "risk-substance-use"),
    }
    patients: dict[str, tuple[str, str]] = {}
    for category, level in expected:
        created = _post(caller, signal(f"rs-{category}-{level}", category, level))
        patients[created["patient"]] = (category, level)
    drain()
    seen = {a["patient"]: (a["severity"], a["rule"]) for a in _alerts(caller)}
    assert {p: seen.get(p) for p in patients} == {p: expected[key] for p, key in patients.items()}


def test_a_low_signal_opens_no_alert(caller: Caller, oncall: Receiver, drain: Drain) -> None:
    _post(caller, signal("rs-low", level="low"))
    drain()
    assert _alerts(caller) == []
    assert oncall.deliveries == []


def _tenant_id(engine: Engine, caller: Caller) -> str:
    with Session(engine) as session:
        return session.exec(select(Tenant.id).where(Tenant.name == caller.tenant)).one()


def test_the_card_and_the_dashboard_show_the_signal(
    app_client: TestClient, caller: Caller, engine: Engine, settings: Settings, drain: Drain
) -> None:
    value = f"rs-card-{uuid.uuid4().hex[:8]}"
    created = _post(caller, signal(value))
    drain()
    [alert] = _alerts(caller)
    signing = SigningEhr()
    try:
        with signing.server.running():
            signing.register(engine, settings, caller.tenant)
            patient = {
                "resourceType": "Patient",
                "id": "ehr-rs",
                "identifier": [{"system": "https://app.example/patients", "value": value}],
            }
            response = app_client.post(
                SERVICE, json=hook_request("ehr-rs", patient), headers=signing.headers(SERVICE)
            )
            assert response.status_code == 200, response.text
            [card] = response.json()["cards"]
            assert card["indicator"] == "critical"
            assert "self-harm" in card["summary"].lower()
    finally:
        CACHE.clear()
    tenant = _tenant_id(engine, caller)
    browser = signed_in_browser(engine, tenant)
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    page = app_client.get(f"/alerts/{alert['id']}", headers=cookie)
    assert page.status_code == 200, page.text
    assert "Risk signal: Self-harm" in page.text
    assert "High likelihood" in page.text
    assert created["resources"][0] in page.text
    inbox = app_client.get("/inbox", headers=cookie)
    assert inbox.status_code == 200
    assert alert["id"] in inbox.text
    patient_id = created["patient"].removeprefix("Patient/")
    patient_page = app_client.get(f"/patients/{patient_id}", headers=cookie)
    assert patient_page.status_code == 200, patient_page.text
    assert alert["id"] in patient_page.text
    caseload = app_client.get("/caseload", headers=cookie)
    assert caseload.status_code == 200, caseload.text


def test_the_signal_waits_on_the_urgent_queue(caller: Caller, engine: Engine) -> None:
    _post(caller, signal("rs-q", level="moderate"))
    _post(caller, signal("rs-q", app_signal_id="q-2"))
    messages = [m for m in tenant_messages(engine, caller.tenant) if m.task == "reading.created"]
    for m in messages:  # the relay's own judgement when the recording unit had no triage
        payload = orjson.loads(m.payload)
        payload.pop("urgent")
        m.payload = orjson.dumps(payload).decode()
    with engine.connect() as conn:
        names = event_router(load_program())(conn, messages)
    assert names == [TaskName.OBSERVATION_EVALUATE, TaskName.OBSERVATION_EVALUATE_URGENT]
