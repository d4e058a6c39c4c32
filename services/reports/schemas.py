"""The JSON the app API accepts and returns for symptom reports."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

SCORED = ("phq-9", "phq-2", "gad-7")
RATINGS = ("mood", "anxiety", "sleep-quality", "sleep-duration")
Instrument = Literal[
    "phq-9", "phq-2", "gad-7", "mood", "anxiety", "sleep-quality", "sleep-duration"
]


class PatientRef(BaseModel):
    """The patient as the app knows them: an identifier, never a name."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(min_length=1, max_length=300)
    value: str = Field(min_length=1, max_length=200)


class DeviceInfo(BaseModel):
    """The app (or device) that collected the report."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    version: str | None = Field(default=None, max_length=100)


class SymptomReportIn(BaseModel):
    """One report: a questionnaire (``answers``) or a single rating (``value``)."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientRef
    instrument: Instrument
    effective: AwareDatetime
    answers: list[int] | None = Field(default=None, max_length=20)
    difficulty: int | None = None
    value: float | None = None
    note: str | None = Field(default=None, max_length=4000)
    device: DeviceInfo | None = None
    app_report_id: str | None = Field(default=None, min_length=1, max_length=200)


class ReportCreated(BaseModel):
    """What the API answers for an accepted report."""

    id: str
    patient: str
    resources: list[str]
    duplicate: bool = False
