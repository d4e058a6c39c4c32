"""Applying the status of alert Tasks that clinicians worked on in the EHR to careloop's alerts."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from careloop.fhir.identifiers import business_identifier
from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import acknowledge, resolve
from careloop.services.alerts.vocabulary import AlertStatus
from careloop.services.ehr.models import EhrConnection


def apply_task_status(
    session: Session, connection: EhrConnection, tasks: list[dict[str, Any]]
) -> int:
    """Acknowledge or resolve the alerts of accepted or completed ``tasks``; how many."""
    applied = 0
    system = business_identifier("task", "x")["system"]
    for task in tasks:
        alert_id = next(
            (i["value"] for i in task.get("identifier", []) if i.get("system") == system), None
        )
        if alert_id is None:
            continue
        alert = session.get(Alert, alert_id)
        if (
            alert is None
            or alert.tenant_id != connection.tenant_id
            or alert.status == AlertStatus.RESOLVED
        ):
            continue
        owner = (task.get("owner") or {}).get("reference")
        actor = f"ehr:{connection.name}" + (f":{owner}" if owner else "")
        status = task.get("status")
        if status in ("accepted", "in-progress") and alert.status == AlertStatus.OPEN:
            acknowledge(session, connection.tenant_id, alert.id, actor)
            applied += 1
        elif status == "completed":
            notes = task.get("note") or [{}]
            resolve(session, connection.tenant_id, alert.id, actor, notes[-1].get("text"))
            applied += 1
    return applied
