"""Recording that careloop resources are to go to the connected EHRs."""

from __future__ import annotations

from sqlmodel import Session

from careloop.services.ehr.service import active_connection_ids
from careloop.services.outbox.events import ResourcesChanged
from careloop.services.outbox.record import record


def schedule_push(
    session: Session, tenant_id: str, connection_id: str, patient_id: str, references: list[str]
) -> None:
    """Record that one EHR is to get ``references`` (``Type/id``) of a patient."""
    record(session, tenant_id, ResourcesChanged(connection_id, patient_id, tuple(references)))


def resources_changed(session: Session, tenant_id: str, by_patient: dict[str, list[str]]) -> None:
    """Record that every connected EHR is to get these resources (``Type/id`` per patient)."""
    if not by_patient:
        return
    for connection_id in active_connection_ids(session, tenant_id):
        for patient_id, references in by_patient.items():
            schedule_push(session, tenant_id, connection_id, patient_id, references)
