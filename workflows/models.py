"""Tables of the workflow machinery: the outbox, dead letters and processed readings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow
from careloop.services.store.models import SeqType


class OutboxMessage(SQLModel, table=True):
    """Work recorded in the same transaction as its data, relayed to Celery after commit."""

    __tablename__ = "outbox_message"
    __table_args__ = (Index("ix_outbox_pending", "dispatched_at", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    tenant_id: str = Field(max_length=64)
    task: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    """JSON keyword arguments of the task: ids only."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class DeadTask(SQLModel, table=True):
    """A task that failed its last try; replayed by hand after a fix."""

    __tablename__ = "dead_task"

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    task: str = Field(max_length=100)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    error: str = Field(max_length=500)
    """Exception class and a PHI-free reason."""
    attempts: int = 0
    failed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    replayed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ProcessedReading(SQLModel, table=True):
    """An Observation already evaluated: evaluation runs once per reading."""

    __tablename__ = "processed_reading"

    observation_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    evaluated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    fired: str = Field(default="", max_length=500)
    """Space-separated ids of the rules that fired."""
