"""Scheduling EHR pushes: which ``ehr.push`` tasks to enqueue when careloop's resources change."""

from __future__ import annotations

from sqlmodel import Session

from careloop.services.common.task_names import TaskName
from careloop.services.ehr.service import active_connection_ids
from careloop.workflows.outbox import enqueue


def schedule_push(
    session: Session, tenant_id: str, connection_id: str, patient_id: str, references: list[str]
) -> None:
    """Enqueue one push of ``references`` (``Type/id``) for a patient into one EHR."""
    payload = {
        "connection_id": connection_id,
        "patient_id": patient_id,
        "references": references,
    }
    enqueue(session, tenant_id, TaskName.EHR_PUSH, payload)


def resources_changed(session: Session, tenant_id: str, by_patient: dict[str, list[str]]) -> None:
    """Schedule writing careloop resources (``Type/id`` per patient) into every connected EHR."""
    if not by_patient:
        return
    for connection_id in active_connection_ids(session, tenant_id):
        for patient_id, references in by_patient.items():
            schedule_push(session, tenant_id, connection_id, patient_id, references)
