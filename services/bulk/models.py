"""Tables of bulk export: the jobs and the NDJSON files they write (in the database)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime


class JobState(StrEnum):
    """Where an export job is; only ``accepted`` and ``running`` jobs get work done."""

    ACCEPTED = "accepted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATES = (JobState.ACCEPTED, JobState.RUNNING)


class ExportLevel(StrEnum):
    """Which kick-off started the job."""

    SYSTEM = "system"
    PATIENT = "patient"
    GROUP = "group"


class ExportJob(SQLModel, table=True):
    """One ``$export`` request, with the cursor of the work done so far."""

    __tablename__ = "export_job"
    __table_args__ = (
        Index("ix_export_job_client", "tenant_id", "client_id", "state"),
        Index("ix_export_job_expires", "expires_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    tenant_id: str = Field(max_length=64)
    client_id: str = Field(max_length=64)
    level: str = Field(max_length=10)
    group_id: str | None = Field(default=None, max_length=64)
    patients: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """A Group export's member patient ids as of the kick-off (JSON list)."""
    types: str = Field(sa_column=Column(Text, nullable=False))
    """The resource types to export, in order, comma-separated."""
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    transaction_time: datetime = Field(sa_type=UTCDateTime)
    state: str = Field(max_length=12)
    type_index: int = 0
    """The cursor: the type being exported (``len(types)`` when all are done)..."""
    last_seq: int = Field(default=0, sa_type=BigInteger)
    """... and the last ``fhir_resource.seq`` of it written to a file."""
    error: str = Field(default="", max_length=100)
    """Why a failed job failed (an error class, never data)."""
    request_url: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class ExportFile(SQLModel, table=True):
    """One NDJSON file of a job: up to ``bulk_export_file_resources`` resources of one type."""

    __tablename__ = "export_file"
    __table_args__ = (
        # a chunk re-run after a worker died cannot add the same file twice
        UniqueConstraint("job_id", "resource_type", "number", name="ux_export_file_number"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=32)
    resource_type: str = Field(max_length=64)
    number: int
    count: int
    content: str = Field(sa_column=Column(Text, nullable=False))
    """The resources, one JSON object per line."""
    lines: str = Field(sa_column=Column(Text, nullable=False))
    """Per line ``[reference, patient id or null]`` (JSON): the consent check at download."""
