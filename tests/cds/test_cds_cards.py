"""patient-view cards from signed calls: critical, warning and info cards, patient resolution,
and no identifier, name or answer in what the EHR shows."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import Caller
from support.reports import phq9

from careloop.fhir.alerts import task_id_for
from careloop.fhir.validation import checked
from careloop.services.common.egress import destination_policy
from careloop.services.ehr.links import link_manually
from careloop.services.ehr.service import add_connection
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending

APP_SYSTEM = "https://app.example/patients"
NAME_FAMILY, NAME_GIVEN = "Quuxworth", "Zebediah"
MRN = "MRN-SYNTH-93417"
ANSWER_WORDS = ("Not at all", "Several days", "More than half the days", "Nearly every day")
ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 1]


def _report(caller: Caller, value: str, answers: list[int], day: int, kind: str = "phq-9") -> str:
    body = phq9(value, answers, f"2026-11-{day:02d}T09:00:00Z")
    body["instrument"] = kind
    response = caller.post("/v1/symptom-reports", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["patient"]).removeprefix("Patient/")


def _ehr_patient(ehr_id: str, app_value: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": ehr_id,
        "identifier": [
            {"system": APP_SYSTEM, "value": app_value},
            {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": MRN},
        ],
        "name": [{"family": NAME_FAMILY, "given": [NAME_GIVEN]}],
        "birthDate": "1970-01-01",
    }


def _cards(
    app_client: TestClient, ehr: SigningEhr, ehr_id: str, patient: dict[str, Any] | None
) -> list[dict[str, Any]]:
    response = app_client.post(
        SERVICE, json=hook_request(ehr_id, patient), headers=ehr.headers(SERVICE)
    )
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    for card in cards:
        _check_card_shape(card)
    return cards


def _check_card_shape(card: dict[str, Any]) -> None:
    assert len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"] == {"label": "careloop", "url": "http://testserver"}
    uuid.UUID(card["uuid"])
    (link,) = card["links"]
    assert (link["type"], link["url"], link["label"]) == (
        "smart",
        "http://testserver/launch",
        "Open in careloop",
    )
    json.loads(link["appContext"])
    if card.get("suggestions"):
        assert card["selectionBehavior"] in ("any", "at-most-one")
        for suggestion in card["suggestions"]:
            uuid.UUID(suggestion["uuid"])
            assert suggestion["actions"]
            for action in suggestion["actions"]:
                assert action["type"] in ("create", "update")
                checked(action["resource"])  # valid FHIR R4


def _no_phi(cards: list[dict[str, Any]], app_value: str) -> None:
    text = json.dumps(cards)
    for planted in (NAME_FAMILY, NAME_GIVEN, MRN, app_value, "1970-01-01"):
        assert planted not in text
    for card in cards:
        assert not any(word in card["summary"] for word in ANSWER_WORDS)
        assert "44260-8" not in card["summary"] + card.get("detail", "")


@pytest.fixture
def drain(engine: Engine, settings: Settings) -> Any:
    """Run the outbox work the API recorded (rules open alerts)."""
    return lambda: run_pending(engine, settings)


def test_item9_positive_gives_a_critical_card_with_follow_up(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, drain: Any
) -> None:
    app_value = f"cds-{uuid.uuid4().hex[:8]}"
    patient_id = _report(caller, app_value, ITEM9, 3)
    drain()
    [alert] = caller.get("/v1/alerts", params={"status": "open"}).json()["alerts"]
    cards = _cards(app_client, ehr, "ehr-71", _ehr_patient("ehr-71", app_value))
    _no_phi(cards, app_value)
    [card] = cards
    assert card["indicator"] == "critical"
    assert card["uuid"] == alert["id"]
    assert "item 9" in card["summary"]
    assert json.loads(card["links"][0]["appContext"]) == {
        "patient": patient_id,
        "alert": alert["id"],
    }
    acknowledge, follow_up = card["suggestions"]
    assert acknowledge["label"] == "Acknowledge"
    [update] = acknowledge["actions"]
    assert update["type"] == "update"
    assert update["resource"]["resourceType"] == "Task"
    assert update["resource"]["id"] == task_id_for(alert["id"])
    assert update["resource"]["status"] == "accepted"
    [create] = follow_up["actions"]
    assert create["type"] == "create"
    assert "C-SSRS" in follow_up["label"]
    assert create["resource"]["priority"] == "stat"
    assert create["resource"]["for"] == {"reference": "Patient/ehr-71"}
    assert acknowledge["uuid"] != follow_up["uuid"]
    reasons = card["overrideReasons"]
    assert reasons and all(r["system"].startswith("https://careloop.example/") for r in reasons)
    # Deterministic per alert: the same card (and suggestions) on the next call.
    [again] = _cards(app_client, ehr, "ehr-71", _ehr_patient("ehr-71", app_value))
    assert again["uuid"] == card["uuid"]
    assert [s["uuid"] for s in again["suggestions"]] == [s["uuid"] for s in card["suggestions"]]


def test_several_open_alerts_are_cards_most_severe_first(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, drain: Any
) -> None:
    app_value = f"cds-{uuid.uuid4().hex[:8]}"
    # One reading is one alert (all its reasons): a severe GAD-7 and then an item-9 PHQ-9 are two.
    _report(caller, app_value, [3] * 7, 3, kind="gad-7")
    _report(caller, app_value, [0] * 8 + [1], 4)
    drain()
    cards = _cards(app_client, ehr, "ehr-72", _ehr_patient("ehr-72", app_value))
    _no_phi(cards, app_value)
    assert [c["indicator"] for c in cards] == ["critical", "warning"]
    warning = cards[1]
    assert "C-SSRS" not in json.dumps(warning)
    assert warning["suggestions"][1]["actions"][0]["resource"]["code"]["text"].startswith(
        "Follow-up review"
    )
    assert len({c["uuid"] for c in cards}) == 2


def test_without_open_alerts_an_info_card_gives_scores_and_trend(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, drain: Any
) -> None:
    app_value = f"cds-{uuid.uuid4().hex[:8]}"
    _report(caller, app_value, [1, 1, 0, 0, 0, 0, 0, 0, 0], 5)
    _report(caller, app_value, [2, 2, 1, 1, 0, 0, 0, 0, 0], 12)
    _report(caller, app_value, [1, 1, 1, 0, 0, 0, 0], 12, kind="gad-7")
    drain()
    cards = _cards(app_client, ehr, "ehr-73", _ehr_patient("ehr-73", app_value))
    _no_phi(cards, app_value)
    [card] = cards
    assert card["indicator"] == "info"
    assert card["summary"] == "careloop: PHQ-9 6 (up 4), GAD-7 3 (first score); no open alerts"
    assert "suggestions" not in card
    assert json.loads(card["links"][0]["appContext"]).keys() == {"patient"}


def test_acknowledged_alert_stays_a_card_without_the_acknowledge_suggestion(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, drain: Any
) -> None:
    app_value = f"cds-{uuid.uuid4().hex[:8]}"
    _report(caller, app_value, ITEM9, 6)
    drain()
    [alert] = caller.get("/v1/alerts", params={"status": "open"}).json()["alerts"]
    assert caller.post(f"/v1/alerts/{alert['id']}/acknowledge", json={}).status_code == 200
    [card] = _cards(app_client, ehr, "ehr-74", _ehr_patient("ehr-74", app_value))
    assert card["indicator"] == "critical"
    assert "acknowledged" in card["summary"]
    assert [s["label"] for s in card["suggestions"]] == [
        "Order a same-day suicide risk assessment (C-SSRS)"
    ]


def test_unknown_or_ambiguous_patients_get_no_cards(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, drain: Any
) -> None:
    first, second = f"cds-{uuid.uuid4().hex[:8]}", f"cds-{uuid.uuid4().hex[:8]}"
    _report(caller, first, ITEM9, 7)
    _report(caller, second, ITEM9, 7)
    drain()
    assert _cards(app_client, ehr, "ehr-75", None) == []
    assert _cards(app_client, ehr, "ehr-75", _ehr_patient("ehr-75", "nobody-known")) == []
    # The prefetched Patient is another one than the context's: not used.
    assert _cards(app_client, ehr, "ehr-76", _ehr_patient("ehr-75", first)) == []
    # Identifiers naming two careloop patients: never guessed.
    both = _ehr_patient("ehr-77", first)
    both["identifier"].append({"system": APP_SYSTEM, "value": second})
    assert _cards(app_client, ehr, "ehr-77", both) == []


def test_another_tenants_patient_is_never_found(
    app_client: TestClient, caller: Caller, ehr: SigningEhr, engine: Engine, drain: Any
) -> None:
    from support.clients import make_caller

    other = make_caller(app_client, engine)
    app_value = f"cds-{uuid.uuid4().hex[:8]}"
    _report(other, app_value, ITEM9, 8)
    drain()
    assert _cards(app_client, ehr, "ehr-78", _ehr_patient("ehr-78", app_value)) == []


def test_patient_link_of_the_clients_ehr_resolves_the_patient(
    app_client: TestClient,
    caller: Caller,
    engine: Engine,
    settings: Settings,
    drain: Any,
) -> None:
    app_value = f"cds-{uuid.uuid4().hex[:8]}"
    patient_id = _report(caller, app_value, ITEM9, 9)
    drain()
    with session_scope(engine) as session:
        connection = add_connection(
            session,
            "hospital",
            "https://hospital.example/fhir",
            "careloop",
            "system/Observation.cruds",
            caller.tenant,
            destinations=destination_policy(settings),
        )
        link_manually(session, connection, patient_id, "ehr-linked-1")
        connection.active = False  # no pushes to this made-up EHR from other tests' drains
        session.add(connection)
    linked = SigningEhr()
    with linked.server.running():
        linked.register(engine, settings, caller.tenant, ehr_name="hospital")
        [card] = _cards(app_client, linked, "ehr-linked-1", None)
        assert card["indicator"] == "critical"
        assert json.loads(card["links"][0]["appContext"])["patient"] == patient_id
        # The link is for that EHR id only.
        assert _cards(app_client, linked, "ehr-linked-2", None) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hook": "order-sign"}, "hook"),
        ({"hookInstance": "not-a-uuid"}, "hookInstance"),
        ({"fhirServer": "ftp://ehr.example/fhir"}, "fhirServer"),
        ({"context": {"userId": "Practitioner/1"}}, "context.patientId"),
        ({"context": {"userId": "Practitioner/1", "patientId": "a/b"}}, "context.patientId"),
        ({"context": {"userId": "Device/1", "patientId": "p1"}}, "context.userId"),
        ({"prefetch": {"patient": {"resourceType": "Observation"}}}, "prefetch.patient"),
        (
            {"prefetch": {"patient": {"resourceType": "Patient", "identifier": [{}] * 51}}},
            "prefetch.patient.identifier",
        ),
    ],
)
def test_malformed_calls_are_400_naming_the_field(
    app_client: TestClient, ehr: SigningEhr, change: dict[str, Any], field: str
) -> None:
    body = hook_request("ehr-79") | change
    response = app_client.post(SERVICE, json=body, headers=ehr.headers(SERVICE))
    assert response.status_code == 400, response.text
    expressions = [e for i in response.json()["issue"] for e in i.get("expression", [])]
    assert any(e.startswith(field) for e in expressions), expressions


def test_prefetch_null_means_no_data(app_client: TestClient, ehr: SigningEhr) -> None:
    body = hook_request("ehr-80") | {"prefetch": {"patient": None}}
    response = app_client.post(SERVICE, json=body, headers=ehr.headers(SERVICE))
    assert response.status_code == 200
    assert response.json() == {"cards": []}
