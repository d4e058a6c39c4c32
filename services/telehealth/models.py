"""Telehealth sessions; each is served as one FHIR Encounter that gains versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class TelehealthSessionRow(SQLModel, table=True):
    """The current state of one telehealth session (its id is the Encounter's id)."""

    __tablename__ = "telehealth_session"
    __table_args__ = (
        Index("ux_telehealth_app_session", "tenant_id", "client_id", "app_session_id", unique=True),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64, index=True)
    client_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    practitioner_system: str | None = Field(default=None, max_length=300)
    practitioner_value: str | None = Field(default=None, max_length=200)
    status: str = Field(max_length=20)
    modality: str = Field(max_length=10)
    start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    platform: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    app_session_id: str | None = Field(default=None, max_length=200)
    version: int = 1
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
