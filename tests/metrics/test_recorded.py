"""The recorded metrics move with what careloop really does: reports, alerts, notifications,
the time from report to notification, requests, and EHR pushes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ehr_server import Fault, TestEHR
from fastapi.testclient import TestClient
from metrics_helpers import Scrape, delta
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.clients import Caller
from support.ehr import connect_ehr
from support.reports import phq9
from webhook_receiver import Receiver

from careloop.services.ehr.models import EhrConnection
from careloop.services.settings import Settings
from careloop.services.tenancy.service import get_or_create_tenant

ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 1]
REPORTS = "careloop_reports_accepted_total"
ALERTS = "careloop_alerts_opened_total"
NOTIFICATIONS = "careloop_notifications_total"
LATENCY = "careloop_report_to_notification_seconds"
PUSHES = "careloop_ehr_pushes_total"


def _post(caller: Caller, body: dict[str, Any]) -> Any:
    response = caller.post("/v1/symptom-reports", json=body)
    assert response.status_code in (200, 201), response.text
    return response


def test_a_critical_report_counts_its_alert_notification_and_latency(
    app_caller: Caller,
    oncall: Receiver,
    drain: Callable[[], int],
    scrape: Callable[[], Scrape],
) -> None:
    drain()
    before = scrape()
    _post(app_caller, phq9("m-critical", ITEM9, "2026-11-20T09:00:00Z"))
    drain()
    oncall.wait_for(1)
    after = scrape()
    assert delta(before, after, REPORTS, instrument="phq-9") == 1
    assert delta(before, after, ALERTS, severity="critical") == 1
    assert delta(before, after, NOTIFICATIONS, channel="webhook", outcome="sent") == 1
    assert delta(before, after, NOTIFICATIONS, channel="webhook", outcome="failed") == 0
    assert delta(before, after, f"{LATENCY}_count", severity="critical") == 1
    # report received -> webhook accepted, in-process: well under a minute, above nothing
    seconds = delta(before, after, f"{LATENCY}_sum", severity="critical")
    assert 0 < seconds < 60
    assert delta(before, after, f"{LATENCY}_bucket", severity="critical", le="60.0") == 1
    labels = {"route": "/v1/symptom-reports", "method": "POST", "status": "201"}
    assert delta(before, after, "careloop_http_requests_total", **labels) == 1
    timing = {"route": "/v1/symptom-reports", "method": "POST"}
    assert delta(before, after, "careloop_http_request_duration_seconds_count", **timing) == 1


def test_a_retried_report_and_a_batch_count_what_was_stored(
    app_caller: Caller, scrape: Callable[[], Scrape]
) -> None:
    before = scrape()
    body = phq9("m-retry", effective="2026-11-21T09:00:00Z", app_report_id="r-1")
    assert _post(app_caller, body).status_code == 201
    assert _post(app_caller, body).status_code == 200  # the app retries: nothing new
    batch = {
        "reports": [
            {**phq9("m-batch"), "instrument": "gad-7", "answers": [1] * 7},
            {
                "patient": phq9("m-batch")["patient"],
                "instrument": "mood",
                "value": 4,
                "effective": "2026-11-21T10:00:00Z",
            },
            {**phq9("m-batch"), "answers": [9]},  # invalid: 422 in the batch, not stored
        ]
    }
    results = app_caller.post("/v1/symptom-reports/batch", json=batch).json()["results"]
    assert [r["status"] for r in results] == [201, 201, 422]
    after = scrape()
    assert delta(before, after, REPORTS, instrument="phq-9") == 1
    assert delta(before, after, REPORTS, instrument="gad-7") == 1
    assert delta(before, after, REPORTS, instrument="mood") == 1


def test_a_failing_webhook_counts_failed_attempts(
    app_caller: Caller,
    oncall: Receiver,
    drain: Callable[[], int],
    scrape: Callable[[], Scrape],
) -> None:
    drain()
    oncall.status = 503
    before = scrape()
    _post(app_caller, phq9("m-failing", ITEM9, "2026-11-22T09:00:00Z"))
    drain()
    after = scrape()
    assert delta(before, after, NOTIFICATIONS, channel="webhook", outcome="failed") == 1
    assert delta(before, after, NOTIFICATIONS, channel="webhook", outcome="sent") == 0
    assert delta(before, after, f"{LATENCY}_count", severity="critical") == 0


def test_unmatched_paths_share_one_label_and_templates_hide_ids(
    app_caller: Caller, scrape: Callable[[], Scrape]
) -> None:
    before = scrape()
    assert app_caller.get("/no/such/place-123").status_code == 404
    assert app_caller.get("/fhir/Patient/unknown-id-456").status_code == 404
    app_caller.http.request("BREW", "/v1/alerts")
    after = scrape()
    requests = "careloop_http_requests_total"
    assert delta(before, after, requests, route="unmatched", method="GET", status="404") == 1
    read = {"route": "/fhir/{rtype}/{id}", "method": "GET", "status": "404"}
    assert delta(before, after, requests, **read) == 1
    assert delta(before, after, requests, route="/v1/alerts", method="other", status="405") == 1
    for raw in ("place-123", "unknown-id-456", "BREW"):
        assert raw not in after.text


@pytest.fixture
def connected(
    api: TestClient, metrics_engine: Engine, metrics_settings: Settings, app_caller: Caller
) -> Any:
    """The caller's tenant connected to a fresh test EHR; (ehr, connection id)."""
    with TestEHR() as ehr:
        connect_ehr(api, metrics_engine, metrics_settings, app_caller, ehr)
        with Session(metrics_engine) as session:
            tenant_id = get_or_create_tenant(session, app_caller.tenant).id
            connection = session.exec(
                select(EhrConnection).where(EhrConnection.tenant_id == tenant_id)
            ).one()
        yield ehr, connection.id


def test_ehr_pushes_count_written_and_failed_by_connection(
    app_caller: Caller,
    connected: tuple[TestEHR, str],
    drain: Callable[[], int],
    scrape: Callable[[], Scrape],
) -> None:
    ehr, connection_id = connected
    ehr.seed(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "https://app.example/patients", "value": "m-ehr"}],
            "active": True,
        }
    )
    drain()
    before = scrape()
    assert before.value("careloop_ehr_circuit_open", connection=connection_id) == 0
    assert before.has("careloop_ehr_circuit_open", connection=connection_id)
    _post(app_caller, phq9("m-ehr", effective="2026-11-23T09:00:00Z"))
    ehr.inject(Fault.HTTP_503, count=1, method="POST")
    drain()  # the EHR answers 503 (a transient failure), the push is due again, and written
    after = scrape()
    # each push of the refused Bundle counts (the report's resources, its new Patient's)
    attempts = delta(before, after, PUSHES, connection=connection_id, outcome="failed")
    assert attempts >= 1
    assert delta(before, after, PUSHES, connection=connection_id, outcome="written") == attempts
    assert delta(before, after, PUSHES, connection=connection_id, outcome="refused") == 0
    assert len(ehr.resources("Observation")) == 1
