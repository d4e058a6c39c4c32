"""Group-session request bodies for the tests."""

from __future__ import annotations

from typing import Any

PATIENTS = "https://app.example/patients"


def participant(value: str, attendance: str | None = "attended", **extra: Any) -> dict[str, Any]:
    """One participant of a session body."""
    body: dict[str, Any] = {"patient": {"system": PATIENTS, "value": value}}
    if attendance is not None:
        body["attendance"] = attendance
    return body | extra


def group_session(
    app_session_id: str = "grp-1",
    participants: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A valid finished session body; ``extra`` adds or replaces fields."""
    body: dict[str, Any] = {
        "app_session_id": app_session_id,
        "facilitator": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
        "modality": "video",
        "status": "finished",
        "start": "2026-11-24T17:00:00Z",
        "end": "2026-11-24T18:00:00Z",
        "participants": participants
        if participants is not None
        else [
            participant("g-1", "attended"),
            participant("g-2", "left-early", left_at="2026-11-24T17:40:00Z"),
            participant("g-3", "no-show"),
        ],
    }
    return body | extra
