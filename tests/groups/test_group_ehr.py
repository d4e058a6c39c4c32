"""A group session reaches the linked EHR chart once: each linked patient's Encounter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ehr_server import TestEHR
from fastapi.testclient import TestClient
from group_bodies import PATIENTS, group_session, participant
from sqlalchemy import Engine
from support.clients import BASE_URL, make_caller
from support.ehr import connect_ehr

from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app


@pytest.fixture
def ehr(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, TestEHR, Settings]]:
    """careloop connected to a fresh test EHR."""
    fast = settings.model_copy(update={"ehr_timeout_seconds": 1.0, "ehr_circuit_failures": 100})
    with TestEHR() as server, TestClient(create_app(fast, engine), base_url=BASE_URL) as api:
        yield api, server, fast


def test_the_participants_encounters_land_in_the_chart_once(
    ehr: tuple[TestClient, TestEHR, Settings], engine: Engine
) -> None:
    api, server, settings = ehr
    caller = make_caller(api, engine)
    connect_ehr(api, engine, settings, caller, server, "system/*.cruds")
    patient = server.seed(
        {
            "resourceType": "Patient",
            "identifier": [{"system": PATIENTS, "value": "g-ehr"}],
            "active": True,
        }
    )
    body = group_session("grp-ehr", [participant("g-ehr", "no-show")])
    assert caller.post("/v1/group-sessions", json=body).status_code == 201
    run_pending(engine, settings)
    # Only the patient's own Encounter goes to their chart; the group's Encounter (subject: the
    # Group, no chart of its own) stays in careloop, so partOf leaves no dangling reference.
    [encounter] = server.resources("Encounter")
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    assert encounter["status"] == "cancelled"
    assert "reference" not in encounter["partOf"]
    assert caller.post("/v1/group-sessions", json=body).status_code == 200  # the app retries
    run_pending(engine, settings)
    assert len(server.resources("Encounter")) == 1
