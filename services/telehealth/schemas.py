"""The JSON the app API accepts for telehealth sessions."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from careloop.services.reports.schemas import PatientRef

Status = Literal["planned", "in-progress", "finished", "cancelled"]
Modality = Literal["video", "phone", "chat"]


class PractitionerRef(BaseModel):
    """The clinician by identifier (e.g. an NPI)."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(min_length=1, max_length=300)
    value: str = Field(min_length=1, max_length=200)


class SessionIn(BaseModel):
    """A new telehealth session."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientRef
    practitioner: PractitionerRef | None = None
    status: Status = "planned"
    modality: Modality = "video"
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    platform: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    app_session_id: str | None = Field(default=None, min_length=1, max_length=200)


class SessionPatch(BaseModel):
    """Changes to a session; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientRef | None = None
    practitioner: PractitionerRef | None = None
    status: Status | None = None
    modality: Modality | None = None
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    platform: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
