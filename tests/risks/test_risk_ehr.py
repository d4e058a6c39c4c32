"""A risk signal reaches the linked EHR chart once: its RiskAssessment, Provenance and Task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ehr_server import TestEHR
from fastapi.testclient import TestClient
from risk_bodies import signal
from sqlalchemy import Engine
from support.clients import BASE_URL, make_caller
from support.ehr import connect_ehr

from careloop.fhir.risks import RISK_CATEGORY_SYSTEM
from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app


@pytest.fixture
def ehr(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, TestEHR, Settings]]:
    """careloop connected to a fresh test EHR."""
    fast = settings.model_copy(update={"ehr_timeout_seconds": 1.0, "ehr_circuit_failures": 100})
    with TestEHR() as server, TestClient(create_app(fast, engine), base_url=BASE_URL) as api:
        yield api, server, fast


def test_a_signal_and_its_alert_land_in_the_linked_chart_once(
    ehr: tuple[TestClient, TestEHR, Settings], engine: Engine
) -> None:
    api, server, settings = ehr
    caller = make_caller(api, engine)
    connect_ehr(api, engine, settings, caller, server, "system/*.cruds")
    patient = server.seed(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "https://app.example/patients", "value": "rs-ehr"}],
            "active": True,
        }
    )
    body = signal("rs-ehr", app_signal_id="ehr-1")
    assert caller.post("/v1/risk-signals", json=body).status_code == 201
    run_pending(engine, settings)
    [assessment] = server.resources("RiskAssessment")
    assert assessment["subject"]["reference"] == f"Patient/{patient['id']}"
    assert assessment["code"]["coding"][0] == {
        "system": RISK_CATEGORY_SYSTEM,
        "code": "self-harm",
        "display": "Self-harm",
    }
    provenances = server.resources("Provenance")
    assert any(
        p["target"] == [{"reference": f"RiskAssessment/{assessment['id']}"}] for p in provenances
    )
    [task] = server.resources("Task")
    assert task["priority"] == "stat"
    assert task["focus"]["reference"] == f"RiskAssessment/{assessment['id']}"
    assert caller.post("/v1/risk-signals", json=body).status_code == 200  # the app retries
    run_pending(engine, settings)
    assert len(server.resources("RiskAssessment")) == 1
    assert len(server.resources("Task")) == 1
