"""Linking a careloop patient to an EHR Patient by hand (an operator resolved an ambiguity)."""

from __future__ import annotations

from sqlmodel import Session, select

from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, EhrWrite, PatientLink
from careloop.services.ehr.pushes import schedule_push
from careloop.services.ehr.vocabulary import LinkMethod, LinkState, WriteState


def link_manually(
    session: Session, connection: EhrConnection, patient_id: str, ehr_patient_id: str
) -> PatientLink:
    """Link a patient to an EHR Patient by hand, and schedule what was waiting for it."""
    link = session.get(PatientLink, (connection.id, patient_id)) or PatientLink(
        connection_id=connection.id, patient_id=patient_id, state=LinkState.LINKED
    )
    link.state = LinkState.LINKED
    link.ehr_patient_id = ehr_patient_id
    link.method = LinkMethod.MANUAL
    link.updated_at = utcnow()
    session.add(link)
    waiting = session.exec(
        select(EhrWrite).where(
            EhrWrite.connection_id == connection.id,
            EhrWrite.patient_id == patient_id,
            EhrWrite.state != WriteState.WRITTEN,
        )
    ).all()
    if waiting:
        schedule_push(
            session,
            connection.tenant_id,
            connection.id,
            patient_id,
            [w.reference for w in waiting],
        )
    return link
