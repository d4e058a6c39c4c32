"""The JSON the app API accepts for consents."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from careloop.services.common.constrained import SafeDatetime, Text200
from careloop.services.reports.schemas import PatientRef

Purpose = Literal["care-team-alerts", "ehr-sync", "research-export"]


class PeriodIn(BaseModel):
    """When the decision holds; an open end holds until revoked or superseded."""

    model_config = ConfigDict(extra="forbid")

    start: SafeDatetime | None = None
    end: SafeDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> PeriodIn:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("period.end must be after period.start")
        return self


class ConsentIn(BaseModel):
    """One decision of the patient: permit or deny one purpose, optionally for a period."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientRef
    decision: Literal["permit", "deny"]
    purpose: Purpose
    period: PeriodIn | None = None
    app_consent_id: Text200 | None = None
    """The app's own id of this decision: a retry with it never records it twice."""
