"""/metrics is guarded (a bearer token, or loopback only outside production) and its labels
never carry PHI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from metrics_helpers import TOKEN, Scrape, settings_for
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller
from webhook_receiver import Receiver

from careloop.services.settings import Environment
from careloop.workflows.web import create_app

MARKER = "PHIMARKER7f3a"


def test_a_scrape_needs_the_token(api: TestClient) -> None:
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics").headers["www-authenticate"] == "Bearer"
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert api.get("/metrics", headers=wrong).status_code == 401
    assert api.get("/metrics", headers={"Authorization": TOKEN}).status_code == 401
    right = api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and "careloop_http_requests_total" in right.text


@pytest.fixture
def tokenless(
    metrics_database: str, metrics_engine: Engine, tmp_path: Path
) -> Iterator[Callable[..., TestClient]]:
    """A careloop without a metrics token, called from a given address in an environment."""
    clients: list[TestClient] = []

    def make(host: str, environment: Environment = Environment.test) -> TestClient:
        settings = settings_for(
            metrics_database, tmp_path, metrics_token="", environment=environment
        )
        app = create_app(settings, metrics_engine)
        client = TestClient(app, base_url=BASE_URL, client=(host, 50000))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_without_a_token_only_loopback_is_answered_and_never_in_production(
    tokenless: Callable[..., TestClient],
) -> None:
    assert tokenless("127.0.0.1").get("/metrics").status_code == 200
    assert tokenless("::1").get("/metrics").status_code == 200
    remote = tokenless("203.0.113.9").get("/metrics")
    assert remote.status_code == 404  # as if there were no such route
    assert remote.json()["resourceType"] == "OperationOutcome"
    assert tokenless("testclient").get("/metrics").status_code == 404
    assert tokenless("127.0.0.1", Environment.production).get("/metrics").status_code == 404


def test_metrics_carry_no_phi(
    app_caller: Caller,
    oncall: Receiver,
    drain: Callable[[], int],
    scrape: Callable[[], Scrape],
) -> None:
    report = {
        "patient": {"system": f"https://app.example/{MARKER}", "value": f"mrn-{MARKER}"},
        "instrument": "phq-9",
        "answers": [0, 0, 0, 0, 0, 0, 0, 0, 2],
        "effective": "2026-11-24T09:00:00Z",
        "note": f"private words {MARKER}",
        "app_report_id": f"r-{MARKER}",
        "device": {"name": f"phone-{MARKER}", "version": MARKER},
    }
    response = app_caller.post(
        "/v1/symptom-reports", json=report, headers={"Idempotency-Key": MARKER}
    )
    assert response.status_code == 201, response.text
    drain()
    oncall.wait_for(1)
    patient = response.json()["patient"]
    app_caller.get(f"/fhir/{patient}")
    app_caller.get("/fhir/Patient", params={"identifier": f"https://app.example/{MARKER}|x"})
    app_caller.get(f"/fhir/Observation/{MARKER}")
    app_caller.get(f"/{MARKER}/nowhere")
    app_caller.http.request(MARKER, "/v1/alerts")
    text = scrape().text
    assert "careloop_alerts_opened_total" in text
    assert MARKER not in text
    assert MARKER.lower() not in text.lower()
    assert patient.split("/")[1] not in text  # ids of patients are not labels either


AGREED = (
    "careloop_http_requests_total",
    "careloop_http_request_duration_seconds",
    "careloop_reports_accepted_total",
    "careloop_alerts_opened_total",
    "careloop_notifications_total",
    "careloop_report_to_notification_seconds",
    "careloop_ehr_pushes_total",
    "careloop_ehr_circuit_open",
    "careloop_outbox_backlog",
    "careloop_outbox_oldest_age_seconds",
    "careloop_dead_tasks",
    "careloop_queue_depth",
    "careloop_readings_unevaluated",
)
"""The names agreed with deploy/ (its alert rules and dashboard query them)."""


def test_every_agreed_metric_is_served(scrape: Callable[[], Scrape]) -> None:
    text = scrape().text
    for name in AGREED:
        assert f"# TYPE {name} " in text, name
