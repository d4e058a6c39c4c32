"""Writes an EHR refused: the operator's view of one, and queueing it again once fixed."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, EhrFailure, EhrWrite
from careloop.services.ehr.pushes import schedule_push
from careloop.services.ehr.vocabulary import WriteState


def failure_json(failure: EhrFailure) -> dict[str, Any]:
    """An operator's view of one refused write (ids, status and the EHR's reason)."""
    return {
        "id": failure.id,
        "patient": f"Patient/{failure.patient_id}",
        "references": failure.references.split(),
        "status": failure.status_code,
        "reason": failure.reason,
        "failed_at": failure.failed_at.isoformat(),
        "replayed_at": failure.replayed_at.isoformat() if failure.replayed_at else None,
    }


def replay_failure(session: Session, failure: EhrFailure) -> None:
    """Queue a refused write again (after the cause was fixed)."""
    connection = session.get(EhrConnection, failure.connection_id)
    assert connection is not None
    for reference in failure.references.split():
        row = session.get(EhrWrite, (failure.connection_id, reference))
        if row is not None and row.state == WriteState.FAILED:
            row.state = WriteState.WAITING
            session.add(row)
    schedule_push(
        session,
        connection.tenant_id,
        failure.connection_id,
        failure.patient_id,
        failure.references.split(),
    )
    failure.replayed_at = utcnow()
    session.add(failure)
