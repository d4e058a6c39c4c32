"""Alerts in FHIR: a Task per alert (status mirrors the lifecycle), a Communication per message."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careloop.fhir.elements import fhir_datetime
from careloop.fhir.identifiers import business_identifier, deterministic_id
from careloop.fhir.risks import evidence_reference
from careloop.fhir.validation import checked

PRIORITY = {"critical": "stat", "high": "asap", "warning": "urgent", "info": "routine"}
TASK_STATUS = {"open": "requested", "acknowledged": "accepted", "resolved": "completed"}
ALERT_STATUS = {v: k for k, v in TASK_STATUS.items()} | {"in-progress": "acknowledged"}


def task_id_for(alert_id: str) -> str:
    """The id of the Task that mirrors alert ``alert_id``."""
    return deterministic_id(alert_id, "task")


@dataclass(frozen=True)
class TaskNote:
    """A note on the follow-up (acknowledging or resolving), as a ``Task.note`` Annotation."""

    text: str
    time: datetime
    author: str | None = None
    """``Practitioner/{id}`` (an authorReference) or any other name (an authorString)."""


def _annotation(note: TaskNote) -> dict[str, Any]:
    annotation: dict[str, Any] = {"text": note.text, "time": fhir_datetime(note.time, "time")}
    if note.author and note.author.startswith("Practitioner/"):
        annotation["authorReference"] = {"reference": note.author}
    elif note.author:
        annotation["authorString"] = note.author
    return annotation


def map_alert_task(
    alert_id: str,
    patient_id: str,
    observation_id: str | None,
    severity: str,
    status: str,
    title: str,
    owner: str | None,
    authored: datetime,
    modified: datetime,
    note: str | None = None,
    *,
    notes: Sequence[TaskNote] = (),
) -> dict[str, Any]:
    """The Task for an alert: focus the Observation, for the Patient, owner the clinician.

    ``notes`` (who acknowledged or resolved, when, and what they wrote) become ``Task.note``
    after the plain ``note``.
    """
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": task_id_for(alert_id),
        "identifier": [business_identifier("task", alert_id)],
        "status": TASK_STATUS[status],
        "intent": "order",
        "priority": PRIORITY[severity],
        "code": {"text": "Review patient-reported symptom alert"},
        "description": title,
        "for": {"reference": f"Patient/{patient_id}"},
        "authoredOn": fhir_datetime(authored, "authored"),
        "lastModified": fhir_datetime(modified, "modified"),
    }
    if observation_id:
        task["focus"] = {"reference": evidence_reference(observation_id)}
    if owner:
        task["owner"] = {"reference": owner}
    annotations = ([{"text": note}] if note else []) + [_annotation(n) for n in notes if n.text]
    if annotations:
        task["note"] = annotations
    return checked(task)


def map_alert_communication(
    notification_id: str,
    alert_id: str,
    patient_id: str,
    observation_id: str | None,
    recipient: str,
    channel: str,
    sent: datetime,
    title: str,
) -> dict[str, Any]:
    """The Communication recording one notification sent about an alert."""
    about = [{"reference": f"Task/{task_id_for(alert_id)}"}]
    if observation_id:
        about.append({"reference": evidence_reference(observation_id)})
    recipient_ref = (
        {"reference": recipient}
        if recipient.startswith("Practitioner/")
        else {"display": recipient}
    )
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "id": deterministic_id(notification_id, "communication"),
        "identifier": [business_identifier("communication", notification_id)],
        "status": "completed",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                        "code": "alert",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "about": about,
        "recipient": [recipient_ref],
        "sent": fhir_datetime(sent, "sent"),
        "medium": [{"text": channel}],
        "payload": [{"contentString": title}],
    }
    return checked(communication)
