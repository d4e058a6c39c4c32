"""Feedback on cards: accepted and overridden outcomes land in the alert's history; an accepted
Acknowledge acknowledges the alert; unknown cards are ignored."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
from cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import Caller
from support.reports import phq9

from careloop.services.alerts.models import AlertEvent
from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending

FEEDBACK = SERVICE + "/feedback"
COMMENT = "Synthetic free-text comment 4417"


@pytest.fixture
def card(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, engine: Engine, settings: Settings
) -> dict[str, Any]:
    """The critical card of a patient with a positive item 9."""
    value = f"fb-{uuid.uuid4().hex[:8]}"
    body = phq9(value, [0, 0, 0, 0, 0, 0, 0, 0, 2], "2026-11-10T09:00:00Z")
    assert caller.post("/v1/symptom-reports", json=body).status_code == 201
    run_pending(engine, settings)
    patient = {
        "resourceType": "Patient",
        "id": "ehr-fb",
        "identifier": [{"system": "https://app.example/patients", "value": value}],
    }
    response = app_client.post(
        SERVICE, json=hook_request("ehr-fb", patient), headers=ehr.headers(SERVICE)
    )
    [found] = response.json()["cards"]
    return dict(found)


def _send(app_client: TestClient, ehr: SigningEhr, *feedback: dict[str, Any]) -> Any:
    return app_client.post(
        FEEDBACK, json={"feedback": list(feedback)}, headers=ehr.headers(FEEDBACK)
    )


def _events(engine: Engine, alert_id: str) -> list[AlertEvent]:
    with Session(engine) as session:
        query = select(AlertEvent).where(AlertEvent.alert_id == alert_id)
        return list(session.exec(query.order_by(col(AlertEvent.id))).all())


def test_accepted_acknowledge_acknowledges_the_alert(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, engine: Engine, card: dict[str, Any]
) -> None:
    acknowledge = card["suggestions"][0]
    response = _send(
        app_client,
        ehr,
        {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": acknowledge["uuid"]}],
            "outcomeTimestamp": "2026-12-01T14:12:20Z",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"recorded": 1, "ignored": 0}
    alert = caller.get(f"/v1/alerts/{card['uuid']}").json()
    assert alert["status"] == "acknowledged"
    assert alert["acknowledged_by"] == f"cds:{ehr.iss}"
    kinds = [e.kind for e in _events(engine, card["uuid"])]
    assert kinds[-2:] == ["card.accepted", "acknowledged"]
    accepted = next(e for e in _events(engine, card["uuid"]) if e.kind == "card.accepted")
    assert json.loads(accepted.detail)["accepted_suggestions"] == [acknowledge["uuid"]]
    task = caller.get(f"/fhir/{alert['task']}").json()
    assert task["status"] == "accepted"


def test_accepting_only_the_follow_up_records_but_does_not_acknowledge(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, engine: Engine, card: dict[str, Any]
) -> None:
    follow_up = card["suggestions"][1]
    feedback = {
        "card": f"urn:uuid:{card['uuid']}",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": follow_up["uuid"]}],
        "outcomeTimestamp": "2026-12-01T14:12:20Z",
    }
    assert _send(app_client, ehr, feedback).status_code == 200
    assert caller.get(f"/v1/alerts/{card['uuid']}").json()["status"] == "open"
    assert [e.kind for e in _events(engine, card["uuid"])][-1] == "card.accepted"


def test_overridden_card_records_the_reason_and_comment_never_logged(
    app_client: TestClient,
    caller: Caller,
    ehr: SigningEhr,
    engine: Engine,
    card: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reason = card["overrideReasons"][0]
    caplog.set_level(logging.DEBUG)
    response = _send(
        app_client,
        ehr,
        {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {"reason": reason, "userComment": COMMENT},
            "outcomeTimestamp": "2026-12-01T14:15:00Z",
        },
    )
    assert response.status_code == 200
    assert caller.get(f"/v1/alerts/{card['uuid']}").json()["status"] == "open"
    event = _events(engine, card["uuid"])[-1]
    assert event.kind == "card.overridden"
    assert event.actor == f"cds:{ehr.iss}"
    detail = json.loads(event.detail)
    assert detail["reason"] == reason
    assert detail["comment"] == COMMENT
    assert detail["outcome_timestamp"].startswith("2026-12-01T14:15:00")
    assert COMMENT not in caplog.text


def test_feedback_on_unknown_cards_is_ignored(
    app_client: TestClient, ehr: SigningEhr, card: dict[str, Any]
) -> None:
    unknown = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "outcomeTimestamp": "2026-12-01T14:15:00Z",
    }
    known = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": "2026-12-01T14:16:00Z",
    }
    response = _send(app_client, ehr, unknown, known)
    assert response.status_code == 200
    assert response.json() == {"recorded": 1, "ignored": 1}


def test_another_tenants_ehr_cannot_give_feedback_on_the_alert(
    app_client: TestClient,
    engine: Engine,
    settings: Settings,
    caller: Caller,
    card: dict[str, Any],
) -> None:
    from support.clients import make_caller

    other_tenant = make_caller(app_client, engine)
    stranger = SigningEhr()
    with stranger.server.running():
        stranger.register(engine, settings, other_tenant.tenant)
        acknowledge = card["suggestions"][0]
        feedback = {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": acknowledge["uuid"]}],
            "outcomeTimestamp": "2026-12-01T14:12:20Z",
        }
        assert _send(app_client, stranger, feedback).json() == {"recorded": 0, "ignored": 1}
    assert caller.get(f"/v1/alerts/{card['uuid']}").json()["status"] == "open"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [{"card": "not-a-uuid", "outcome": "accepted"}]}, "feedback[0].card"),
        (
            {
                "feedback": [
                    {
                        "card": str(uuid.uuid4()),
                        "outcome": "maybe",
                        "outcomeTimestamp": "2026-12-01T14:12:20Z",
                    }
                ]
            },
            "feedback[0].outcome",
        ),
    ],
)
def test_malformed_feedback_is_400_naming_the_field(
    app_client: TestClient, ehr: SigningEhr, body: dict[str, Any], field: str
) -> None:
    response = app_client.post(FEEDBACK, json=body, headers=ehr.headers(FEEDBACK))
    assert response.status_code == 400, response.text
    assert field in [e for i in response.json()["issue"] for e in i.get("expression", [])]
