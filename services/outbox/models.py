"""Tables of the outbox: open and completed messages, and dead letters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow
from careloop.services.store.models import SeqType


class OutboxMessage(SQLModel, table=True):
    """Work recorded in the same transaction as its data, relayed to Celery after commit.

    The database, not the broker, owns completion: a message is done when its task committed
    its effect (``completed_at``). Until then the relay publishes it whenever it is due
    (``available_at``): at once when new, and again when the lease of its last publication ran
    out, so a message a dead worker took with it is never lost.
    """

    __tablename__ = "outbox_message"
    __table_args__ = (
        # The relay's query (every 2 s): only open messages are in it, so it stays small however
        # many completed ones the table holds.
        Index(
            "ix_outbox_due",
            "available_at",
            postgresql_where=text("completed_at IS NULL"),
            sqlite_where=text("completed_at IS NULL"),
        ),
        Index("ix_outbox_completed", "completed_at"),  # pruning old completed messages
    )

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    tenant_id: str = Field(max_length=64)
    task: str = Field(max_length=100)
    """The event type (``EventType``), or the name of work replayed from a dead letter."""
    payload: str = Field(sa_column=Column(Text, nullable=False))
    """The event's fields as JSON: ids only."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    available_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    """When the relay may publish it (again): at once, or when its last lease ends."""
    dispatched_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Its last publication."""
    attempts: int = 0
    """How often it was published."""
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=16)
    """``done``, ``dead`` (failed for good, see the dead-letter table) or ``legacy`` (dispatched
    before completion was recorded)."""
    traceparent: str | None = Field(default=None, max_length=55)
    """The W3C traceparent of the span that recorded it, so its task continues that trace;
    NULL when tracing is off (``services.telemetry``)."""


class DeadTask(SQLModel, table=True):
    """A task that failed its last try; replayed by hand after a fix."""

    __tablename__ = "dead_task"

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    task: str = Field(max_length=100)
    """The outbox message's name (an event type), or the Celery task's for beat's work."""
    payload: str = Field(sa_column=Column(Text, nullable=False))
    error: str = Field(max_length=500)
    """Exception class and a PHI-free reason."""
    attempts: int = 0
    failed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    replayed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
