"""The JSON the app API accepts for telehealth sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from careloop.services.common.constrained import SafeDatetime, Text200, Text2000, Uri300
from careloop.services.reports.schemas import PatientRef

Status = Literal["planned", "in-progress", "finished", "cancelled"]
Modality = Literal["video", "phone", "chat"]


class PractitionerRef(BaseModel):
    """The clinician by identifier (e.g. an NPI)."""

    model_config = ConfigDict(extra="forbid")

    system: Uri300
    value: Text200


class SessionIn(BaseModel):
    """A new telehealth session."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "patient": {"system": "https://app.example/patients", "value": "t-1"},
                    "practitioner": {
                        "system": "http://hl7.org/fhir/sid/us-npi",
                        "value": "1234567893",
                    },
                    "status": "planned",
                    "modality": "video",
                    "start": "2026-11-24T15:00:00Z",
                    "platform": "ExampleVideo",
                }
            ]
        },
    )

    patient: PatientRef
    practitioner: PractitionerRef | None = None
    status: Status = "planned"
    modality: Modality = "video"
    start: SafeDatetime | None = None
    end: SafeDatetime | None = None
    platform: Text200 | None = None
    reason: Text2000 | None = None
    app_session_id: Text200 | None = None


class SessionPatch(BaseModel):
    """Changes to a session; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientRef | None = None
    practitioner: PractitionerRef | None = None
    status: Status | None = None
    modality: Modality | None = None
    start: SafeDatetime | None = None
    end: SafeDatetime | None = None
    platform: Text200 | None = None
    reason: Text2000 | None = None
