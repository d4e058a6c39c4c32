"""Acknowledge and resolve take a note: in the alert JSON, as Task.note in FHIR, never in logs."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller
from support.reports import phq9

from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending

ACK_NOTE = "canary-ack: will call the patient at 3 pm"
RESOLVE_NOTE = "canary-resolve: safety plan reviewed\nfollow-up booked"


def _open_alert(caller: Caller, engine: Engine, settings: Settings, patient: str) -> str:
    report = phq9(patient, [0, 0, 0, 0, 0, 0, 0, 0, 1], "2026-11-03T09:00:00Z")
    assert caller.post("/v1/symptom-reports", json=report).status_code == 201
    run_pending(engine, settings)
    alerts = caller.get("/v1/alerts", params={"status": "open"}).json()["alerts"]
    [alert] = [a for a in alerts if a["rule"].startswith("phq9-item9")]
    return str(alert["id"])


def test_notes_reach_the_alert_and_the_task_and_never_the_logs(
    caller: Caller, engine: Engine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    alert_id = _open_alert(caller, engine, settings, "note-1")
    with caplog.at_level(logging.DEBUG):
        acked = caller.post(
            f"/v1/alerts/{alert_id}/acknowledge",
            json={"by": "Practitioner/dr-note", "note": ACK_NOTE},
        )
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledgement_note"] == ACK_NOTE
        assert acked.json()["link"] == f"{BASE_URL}/alerts/{alert_id}"
        resolved = caller.post(
            f"/v1/alerts/{alert_id}/resolve", json={"by": "nurse on call", "note": RESOLVE_NOTE}
        )
        assert resolved.status_code == 200, resolved.text
        task_ref = resolved.json()["task"]
        task = caller.get(f"/fhir/{task_ref}")
        run_pending(engine, settings)
    assert task.status_code == 200, task.text
    body = task.json()
    assert body["status"] == "completed"
    ack, done = body["note"]
    assert ack["text"] == ACK_NOTE and ack["authorReference"] == {
        "reference": "Practitioner/dr-note"
    }
    assert done["text"] == RESOLVE_NOTE and done["authorString"] == "nurse on call"
    assert ack["time"] <= done["time"]
    assert caller.get(f"/v1/alerts/{alert_id}").json()["resolution_note"] == RESOLVE_NOTE
    assert "canary-" not in caplog.text


def test_a_note_is_bounded(caller: Caller, engine: Engine, settings: Settings) -> None:
    alert_id = _open_alert(caller, engine, settings, "note-2")
    too_long = caller.post(f"/v1/alerts/{alert_id}/acknowledge", json={"note": "x" * 4001})
    assert too_long.status_code == 422
    assert too_long.json()["resourceType"] == "OperationOutcome"
    assert "note" in too_long.text and "xxxx" not in too_long.text
    plain = caller.post(f"/v1/alerts/{alert_id}/acknowledge")
    assert plain.status_code == 200 and plain.json()["acknowledgement_note"] is None
