"""Accepted symptom reports."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class SymptomReport(SQLModel, table=True):
    """One accepted report; its natural key recognises a retry sent without an Idempotency-Key."""

    __tablename__ = "symptom_report"
    __table_args__ = (
        Index(
            "ux_symptom_report_natural",
            "tenant_id",
            "patient_id",
            "instrument",
            "effective",
            "app_report_id",
            unique=True,
        ),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    client_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    instrument: str = Field(max_length=32)
    effective: datetime = Field(sa_type=UTCDateTime)
    app_report_id: str = Field(default="", max_length=200)
    content_hash: str = Field(max_length=64)
    resources: str = Field(sa_column=Column(Text, nullable=False))
    """Space-separated references of the resources the report created."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
