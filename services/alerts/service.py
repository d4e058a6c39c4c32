"""The alert lifecycle after opening (``opening.py``): notify, escalate, acknowledge, close."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlmodel import Session, select

from careloop.fhir.alerts import TaskNote, map_alert_task, task_id_for
from careloop.fhir.risks import evidence_reference
from careloop.services.alerts.firing import summary
from careloop.services.alerts.models import Alert, AlertEvent, Notification
from careloop.services.alerts.routing import Target, targets_for
from careloop.services.alerts.vocabulary import (
    AlertEventKind,
    AlertStatus,
    NotificationEvent,
    Severity,
)
from careloop.services.audit.service import record_event
from careloop.services.common.errors import ApiError, Issue
from careloop.services.db import utcnow
from careloop.services.ehr.pushes import resources_changed
from careloop.services.outbox.events import NotificationRequested
from careloop.services.outbox.record import record
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore


def _event(
    session: Session, alert: Alert, kind: AlertEventKind, actor: str | None, **detail: Any
) -> None:
    session.add(
        AlertEvent(alert_id=alert.id, kind=kind, actor=actor, detail=orjson.dumps(detail).decode())
    )


def _title(alert: Alert) -> str:
    return summary(orjson.loads(alert.explanation)) or alert.rule_id


def _notes(alert: Alert) -> list[TaskNote]:
    """The acknowledgement's and the resolution's notes, by whom and when."""
    notes = []
    if alert.acknowledgement_note and alert.acknowledged_at:
        notes.append(
            TaskNote(alert.acknowledgement_note, alert.acknowledged_at, alert.acknowledged_by)
        )
    if alert.resolution_note and alert.resolved_at:
        notes.append(TaskNote(alert.resolution_note, alert.resolved_at, alert.resolved_by))
    return notes


def _sync_task(store: ResourceStore, alert: Alert, owner: str | None, create: bool) -> None:
    task = map_alert_task(
        alert.id,
        alert.patient_id,
        alert.observation_id,
        alert.severity,
        alert.status,
        _title(alert),
        owner,
        alert.opened_at,
        alert.updated_at,
        notes=_notes(alert),
    )
    resources_changed(store.session, alert.tenant_id, {alert.patient_id: [f"Task/{task['id']}"]})
    if create:
        store.create_many([task])
        return
    current = store.read("Task", task_id_for(alert.id))
    if current is not None:
        previous_owner = current.as_dict().get("owner")
        if owner is None and previous_owner:
            task["owner"] = previous_owner
    store.update(task)


def _notify(
    session: Session, alert: Alert, event: NotificationEvent, targets: list[Target], now: datetime
) -> int:
    for target in targets:
        notification = Notification(
            id=str(uuid.uuid4()),
            tenant_id=alert.tenant_id,
            alert_id=alert.id,
            event=event,
            channel=target.channel,
            recipient=target.recipient,
            address=target.address,
            secret=target.secret,
        )
        session.add(notification)
        record(session, alert.tenant_id, NotificationRequested(notification.id))
    if targets:
        alert.last_notified_at = now
        _event(
            session,
            alert,
            AlertEventKind.NOTIFIED,
            None,
            event=event,
            recipients=sorted({t.recipient for t in targets}),
        )
    return len(targets)


def escalation_minutes(settings: Settings, severity: str) -> float | None:
    """Minutes an alert of ``severity`` may stay unacknowledged before it escalates."""
    minutes: dict[str, float | None] = {
        Severity.CRITICAL: settings.escalation_critical_minutes,
        Severity.HIGH: settings.escalation_high_minutes,
        Severity.WARNING: settings.escalation_warning_minutes,
    }
    return minutes.get(severity)


def _next_escalation(settings: Settings, severity: str, now: datetime) -> datetime | None:
    minutes = escalation_minutes(settings, severity)
    return now + timedelta(minutes=minutes) if minutes is not None else None


def get_alert(session: Session, tenant_id: str, alert_id: str, lock: bool = False) -> Alert:
    """The tenant's alert, or 404."""
    query = select(Alert).where(Alert.id == alert_id, Alert.tenant_id == tenant_id)
    alert = session.exec(query.with_for_update() if lock else query).first()
    if alert is None:
        raise ApiError.not_found(f"alert {alert_id}")
    return alert


_SAFE_AGENT = re.compile(
    r"(?:client|clinician|ehr|cli):[A-Za-z0-9_.~-]{1,190}|cds:[A-Za-z0-9_.~:/%-]{1,190}"
    r"|Practitioner/[A-Za-z0-9.-]{1,64}"
)


def audit_agent(actor: str) -> str:
    """Who the audit trail names for ``actor``: its ``kind:id`` head (``ehr:<connection>``
    without the EHR's owner), or ``unknown`` for a free-text name it must not keep."""
    if actor.startswith(("cds:", "Practitioner/")):
        head = actor
    else:
        head = ":".join(actor.split(":", 2)[:2])
    return head if _SAFE_AGENT.fullmatch(head) else "unknown"


def _audit(session: Session, alert: Alert, kind: str, agent: str | None, actor: str) -> None:
    refs = f"Patient/{alert.patient_id} Task/{alert.task_id}"
    if alert.observation_id:
        refs += f" {evidence_reference(alert.observation_id)}"
    who = agent or audit_agent(actor)
    record_event(session, alert.tenant_id, kind, who, "success", refs, action="U")


def acknowledge(
    session: Session,
    tenant_id: str,
    alert_id: str,
    actor: str,
    note: str | None = None,
    *,
    agent: str | None = None,
) -> Alert:
    """Someone owns the follow-up (with an optional note): escalation stops, Task accepted.

    Audited (kind ``alert-ack``) as ``agent``, by default ``audit_agent(actor)``; an alert
    already acknowledged is left as it is, and not audited again.
    """
    alert = get_alert(session, tenant_id, alert_id, lock=True)
    if alert.status == AlertStatus.RESOLVED:
        raise ApiError(409, [Issue("business-rule", "the alert is already resolved", "status")])
    if alert.status == AlertStatus.ACKNOWLEDGED:
        return alert
    now = utcnow()
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_by = actor
    alert.acknowledged_at = now
    alert.acknowledgement_note = note
    alert.updated_at = now
    alert.next_escalation_at = None
    _event(session, alert, AlertEventKind.ACKNOWLEDGED, actor)
    _audit(session, alert, "alert-ack", agent, actor)
    session.add(alert)
    session.flush()
    owner = actor if actor.startswith("Practitioner/") else None
    _sync_task(ResourceStore(session, tenant_id), alert, owner, create=False)
    return alert


def resolve(
    session: Session,
    tenant_id: str,
    alert_id: str,
    actor: str,
    note: str | None,
    *,
    agent: str | None = None,
) -> Alert:
    """The follow-up is done: the alert closes and its Task completes.

    Audited (kind ``alert-resolve``) as ``acknowledge`` is; a resolved alert is not again.
    """
    alert = get_alert(session, tenant_id, alert_id, lock=True)
    if alert.status == AlertStatus.RESOLVED:
        return alert
    now = utcnow()
    if alert.acknowledged_at is None:
        alert.acknowledged_by, alert.acknowledged_at = actor, now
    alert.status = AlertStatus.RESOLVED
    alert.resolved_by = actor
    alert.resolved_at = now
    alert.resolution_note = note
    alert.updated_at = now
    alert.next_escalation_at = None
    _event(session, alert, AlertEventKind.RESOLVED, actor)
    _audit(session, alert, "alert-resolve", agent, actor)
    session.add(alert)
    session.flush()
    _sync_task(ResourceStore(session, tenant_id), alert, None, create=False)
    return alert


def escalate(session: Session, settings: Settings, alert: Alert, now: datetime) -> None:
    """Move an unacknowledged alert one step up its chain and set the next due time."""
    store = ResourceStore(session, alert.tenant_id)
    alert.escalation_level += 1
    targets, owner = targets_for(
        session, store, alert.patient_id, alert.severity, alert.escalation_level
    )
    _event(
        session,
        alert,
        AlertEventKind.ESCALATED,
        None,
        level=alert.escalation_level,
        recipients=sorted({t.recipient for t in targets}),
    )
    _notify(session, alert, NotificationEvent.ESCALATED, targets, now)
    alert.updated_at = now
    if alert.escalation_level >= settings.max_escalation_levels:
        alert.next_escalation_at = None
    else:
        alert.next_escalation_at = _next_escalation(settings, alert.severity, now)
    session.add(alert)
    session.flush()
    if owner:
        _sync_task(store, alert, owner, create=False)


def alert_json(alert: Alert, base_url: str) -> dict[str, Any]:
    """The public JSON of an alert (ids and references; the explanation holds no free text).

    Its ``link`` opens the alert's page in the dashboard (after sign-in), for webhooks and email.
    """
    return {
        "id": alert.id,
        "status": alert.status,
        "severity": alert.severity,
        "rule": alert.rule_id,
        "patient": f"Patient/{alert.patient_id}",
        "task": f"Task/{alert.task_id}",
        "observation": evidence_reference(alert.observation_id) if alert.observation_id else None,
        "explanation": orjson.loads(alert.explanation),
        "occurrences": alert.occurrences,
        "opened_at": alert.opened_at.isoformat(),
        "updated_at": alert.updated_at.isoformat(),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledgement_note": alert.acknowledgement_note,
        "resolved_by": alert.resolved_by,
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "resolution_note": alert.resolution_note,
        "escalation_level": alert.escalation_level,
        "link": f"{base_url.rstrip('/')}/alerts/{alert.id}",
    }
