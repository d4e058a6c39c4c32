"""Alerts, their history, notifications and where clinicians want them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from careloop.services.alerts.vocabulary import AlertStatus, NotificationStatus, Severity
from careloop.services.db import UTCDateTime, utcnow
from careloop.services.store.models import SeqType


class Alert(SQLModel, table=True):
    """A rule that fired for a patient; at most one unresolved alert per patient and rule."""

    __tablename__ = "alert"
    __table_args__ = (
        Index(
            "ux_alert_unresolved",
            "tenant_id",
            "patient_id",
            "rule_id",
            unique=True,
            sqlite_where=text(f"status != '{AlertStatus.RESOLVED}'"),
            postgresql_where=text(f"status != '{AlertStatus.RESOLVED}'"),
        ),
        Index("ix_alert_escalation", "status", "next_escalation_at"),
        Index("ix_alert_tenant_status", "tenant_id", "status", "opened_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    patient_id: str = Field(max_length=64)
    rule_id: str = Field(max_length=100)
    severity: str = Field(max_length=20)
    """A ``Severity``."""
    status: str = Field(default=AlertStatus.OPEN, max_length=20)
    """An ``AlertStatus``."""
    observation_id: str | None = Field(default=None, max_length=64)
    explanation: str = Field(sa_column=Column(Text, nullable=False))
    """JSON: rule, values, threshold and where the threshold came from."""
    occurrences: int = 1
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_notified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledgement_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution_note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    escalation_level: int = 0
    next_escalation_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    task_id: str = Field(max_length=64)
    """Id of the FHIR Task that mirrors this alert."""


class AlertEvent(SQLModel, table=True):
    """One step in an alert's life: opened, updated, notified, escalated, acknowledged..."""

    __tablename__ = "alert_event"

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    alert_id: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=30)
    """An ``AlertEventKind``."""
    actor: str | None = Field(default=None, max_length=200)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Notification(SQLModel, table=True):
    """One message to one recipient over one channel about one alert event."""

    __tablename__ = "notification"

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    alert_id: str = Field(max_length=64, index=True)
    event: str = Field(max_length=30)
    """A ``NotificationEvent``."""
    channel: str = Field(max_length=20)
    """A ``Channel``."""
    recipient: str = Field(max_length=200)
    """Practitioner/{id} or oncall"""
    address: str = Field(max_length=2000)
    secret: str | None = Field(default=None, max_length=200)
    status: str = Field(default=NotificationStatus.PENDING, max_length=20)
    """A ``NotificationStatus``."""
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    communication_id: str | None = Field(default=None, max_length=64)


class DeliveryAttempt(SQLModel, table=True):
    """One try at delivering a notification."""

    __tablename__ = "delivery_attempt"

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    notification_id: str = Field(max_length=64, index=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    ok: bool
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=200)
    duration_ms: float = 0.0


class NotificationRoute(SQLModel, table=True):
    """Where a clinician (``Practitioner/{id}``) or a tenant's on-call (``oncall``) is reached."""

    __tablename__ = "notification_route"

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64, index=True)
    recipient: str = Field(max_length=200)
    channel: str = Field(max_length=20)
    """A ``Channel``."""
    address: str = Field(max_length=2000)
    secret: str | None = Field(default=None, max_length=200)
    min_severity: str = Field(default=Severity.INFO, max_length=20)
    """A ``Severity``."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProcessedReading(SQLModel, table=True):
    """An Observation already evaluated: evaluation runs once per reading."""

    __tablename__ = "processed_reading"

    observation_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    evaluated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    fired: str = Field(default="", max_length=500)
    """Space-separated ids of the rules that fired."""
