"""The events services record: what happened, in ids only.

Each event is one outbox message; ``workflows`` decides what to do about it. The payload is the
event's fields as JSON, and never holds PHI (only ids and ``Type/id`` references).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class EventType(StrEnum):
    """What an outbox message says happened (stored in ``outbox_message.task``)."""

    READING_CREATED = "reading.created"
    """A new Observation (or risk-signal RiskAssessment) was stored: it is to be judged against
    the care program."""
    RESOURCES_CHANGED = "resources.changed"
    """careloop resources of a patient are new or changed: one connected EHR is to get them."""
    NOTIFICATION_REQUESTED = "notification.requested"
    """An alert notification was created: it is to be delivered through its channel."""
    EXPORT_REQUESTED = "export.requested"
    """A client kicked off a FHIR bulk ``$export``: its job is to be worked, a chunk a run."""


ReadingTriage = Callable[[dict[str, Any]], bool]
"""Whether a new reading is alert work by itself (it fires a critical rule with no history
needed); ``workflows`` supplies it, since the rules are theirs."""


@dataclass(frozen=True)
class ReadingCreated:
    """A new Observation of a tenant."""

    type: ClassVar[EventType] = EventType.READING_CREATED
    tenant_id: str
    observation_id: str
    """The Observation's id; a risk signal's RiskAssessment comes as ``RiskAssessment/<id>``."""
    urgent: bool | None = None
    """Triaged when recorded (the unit of work had a ``ReadingTriage``); None: when relayed."""


@dataclass(frozen=True)
class ResourcesChanged:
    """Resources (``Type/id``) of one patient that one EHR connection is to receive."""

    type: ClassVar[EventType] = EventType.RESOURCES_CHANGED
    connection_id: str
    patient_id: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class NotificationRequested:
    """A notification (of an alert) waiting for delivery."""

    type: ClassVar[EventType] = EventType.NOTIFICATION_REQUESTED
    notification_id: str


@dataclass(frozen=True)
class ExportRequested:
    """A bulk export job (``services.bulk``) waiting for its files to be written."""

    type: ClassVar[EventType] = EventType.EXPORT_REQUESTED
    job_id: str


Event = ReadingCreated | ResourcesChanged | NotificationRequested | ExportRequested


def payload_of(event: Event) -> dict[str, Any]:
    """The event's fields, as stored in its outbox message."""
    if isinstance(event, ReadingCreated):
        reading: dict[str, Any] = {
            "tenant_id": event.tenant_id,
            "observation_id": event.observation_id,
        }
        if event.urgent is not None:
            reading["urgent"] = event.urgent
        return reading
    if isinstance(event, ResourcesChanged):
        return {
            "connection_id": event.connection_id,
            "patient_id": event.patient_id,
            "references": list(event.references),
        }
    if isinstance(event, ExportRequested):
        return {"job_id": event.job_id}
    return {"notification_id": event.notification_id}
