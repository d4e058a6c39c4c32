"""The JSON the app API accepts and returns for risk signals: ids and codes, never text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from careloop.services.common.constrained import SafeDatetime, Text100, Text200
from careloop.services.reports.schemas import PatientRef

Category = Literal["self-harm", "suicidal-ideation", "crisis", "substance-use", "harm-to-others"]
Level = Literal["low", "moderate", "high"]
Source = Literal["chatbot", "classifier"]
Token = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:~-]+$")
]
"""An opaque reference: letters, digits and ``._:~-`` only, so no sentence fits in it."""


class ModelInfo(BaseModel):
    """The model (or classifier) that detected the risk."""

    model_config = ConfigDict(extra="forbid")

    name: Text200
    version: Text100


class RiskSignalIn(BaseModel):
    """One risk a model detected in a conversation: its category, level, model and time.

    There is no field for the conversation's text, and unknown fields are refused.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "patient": {"system": "https://app.example/patients", "value": "p-001"},
                    "source": "chatbot",
                    "category": "self-harm",
                    "level": "high",
                    "model": {"name": "ExampleSafetyClassifier", "version": "2.1.0"},
                    "detected": "2026-11-20T09:30:00Z",
                    "conversation": "conv-7f3a",
                    "app_signal_id": "s-981",
                }
            ]
        },
    )

    patient: PatientRef
    source: Source
    category: Category
    level: Level
    model: ModelInfo
    detected: SafeDatetime
    conversation: Token | None = None
    app_signal_id: Token | None = None


class RiskSignalCreated(BaseModel):
    """What the API answers for an accepted signal."""

    id: str
    patient: str
    resources: list[str]
