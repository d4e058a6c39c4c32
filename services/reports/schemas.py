"""The JSON the app API accepts and returns for symptom reports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from careloop.services.common.constrained import (
    FiniteFloat,
    SafeDatetime,
    SmallInt,
    Text100,
    Text200,
    Text4000,
    Uri300,
)

SCORED = ("phq-9", "phq-2", "gad-7")
RATINGS = ("mood", "anxiety", "sleep-quality", "sleep-duration")
Instrument = Literal[
    "phq-9", "phq-2", "gad-7", "mood", "anxiety", "sleep-quality", "sleep-duration"
]


class PatientRef(BaseModel):
    """The patient as the app knows them: an identifier, never a name."""

    model_config = ConfigDict(extra="forbid")

    system: Uri300
    value: Text200


class DeviceInfo(BaseModel):
    """The app (or device) that collected the report."""

    model_config = ConfigDict(extra="forbid")

    name: Text200 | None = None
    version: Text100 | None = None


class SymptomReportIn(BaseModel):
    """One report: a questionnaire (``answers``) or a single rating (``value``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "patient": {"system": "https://app.example/patients", "value": "p-001"},
                    "instrument": "phq-9",
                    "answers": [1, 2, 0, 1, 3, 0, 1, 0, 1],
                    "effective": "2026-11-20T09:30:00Z",
                    "app_report_id": "r-981",
                },
                {
                    "patient": {"system": "https://app.example/patients", "value": "p-001"},
                    "instrument": "mood",
                    "value": 6,
                    "effective": "2026-11-21T20:00:00+01:00",
                    "device": {"name": "ExampleApp", "version": "3.2"},
                },
            ]
        },
    )

    patient: PatientRef
    instrument: Instrument
    effective: SafeDatetime
    answers: list[SmallInt] | None = Field(default=None, max_length=20)
    difficulty: SmallInt | None = None
    value: FiniteFloat | None = None
    note: Text4000 | None = None
    device: DeviceInfo | None = None
    app_report_id: Text200 | None = None


class SymptomReportBatchIn(BaseModel):
    """Up to 1,000 reports (a bare JSON array of reports is taken too); documents the body."""

    reports: list[SymptomReportIn] = Field(max_length=1000)


class ReportCreated(BaseModel):
    """What the API answers for an accepted report."""

    id: str
    patient: str
    resources: list[str]
    duplicate: bool = False
