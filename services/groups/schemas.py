"""The JSON the app API accepts for group sessions: identifiers and codes, never names or text."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from careloop.services.common.constrained import SafeDatetime, Text200
from careloop.services.reports.schemas import PatientRef
from careloop.services.telehealth.schemas import PractitionerRef

Modality = Literal["video", "phone", "chat", "in-person"]
Attendance = Literal["attended", "left-early", "no-show"]
SessionStatus = Literal["planned", "finished"]
MAX_PARTICIPANTS = 100
"""Participants of one session (support groups are small; this bounds one unit of work)."""


class ParticipantIn(BaseModel):
    """One participant: the patient by identifier and, once held, their attendance."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientRef
    attendance: Attendance | None = None
    left_at: SafeDatetime | None = None


class GroupSessionIn(BaseModel):
    """A group session: facilitator, modality, schedule and participants."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "app_session_id": "grp-2026-11-24-a",
                    "facilitator": {
                        "system": "http://hl7.org/fhir/sid/us-npi",
                        "value": "1234567893",
                    },
                    "modality": "video",
                    "status": "finished",
                    "start": "2026-11-24T17:00:00Z",
                    "end": "2026-11-24T18:00:00Z",
                    "participants": [
                        {
                            "patient": {"system": "https://app.example/patients", "value": "p-1"},
                            "attendance": "attended",
                        },
                        {
                            "patient": {"system": "https://app.example/patients", "value": "p-2"},
                            "attendance": "no-show",
                        },
                    ],
                }
            ]
        },
    )

    app_session_id: Text200
    facilitator: PractitionerRef
    modality: Modality
    status: SessionStatus = "finished"
    start: SafeDatetime
    end: SafeDatetime | None = None
    participants: list[ParticipantIn] = Field(min_length=1, max_length=MAX_PARTICIPANTS)
