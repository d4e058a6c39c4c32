"""Replaying dead letters through the outbox, so a replay is as reliable as the first run."""

from __future__ import annotations

import orjson
from sqlmodel import Session

from careloop.services.alerts.models import Notification
from careloop.services.alerts.vocabulary import NotificationStatus
from careloop.services.db import utcnow
from careloop.services.outbox.events import EventType
from careloop.services.outbox.models import DeadTask
from careloop.services.outbox.record import record_message


class DeadTaskError(ValueError):
    """No such dead task, or it was replayed already."""


def replay(session: Session, dead_id: int) -> None:
    """Record the dead work again; a failed notification becomes pending with fresh attempts."""
    dead = session.get(DeadTask, dead_id, with_for_update=True)
    if dead is None:
        raise DeadTaskError(f"no dead task {dead_id}")
    if dead.replayed_at is not None:
        raise DeadTaskError(f"dead task {dead_id} was replayed at {dead.replayed_at.isoformat()}")
    payload = orjson.loads(dead.payload)
    tenant_id = str(payload.get("tenant_id", ""))
    if dead.task == EventType.NOTIFICATION_REQUESTED:
        notification = session.get(Notification, payload["notification_id"], with_for_update=True)
        if notification is not None and notification.status == NotificationStatus.FAILED:
            notification.status = NotificationStatus.PENDING
            notification.attempts = 0
            tenant_id = notification.tenant_id
            session.add(notification)
    record_message(session, tenant_id, dead.task, payload)
    dead.replayed_at = utcnow()
    session.add(dead)
