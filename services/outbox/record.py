"""Recording events in the caller's transaction, and handing the committed ones on."""

from __future__ import annotations

from typing import Any

import orjson
from sqlmodel import Session

from careloop.services.outbox.events import Event, ReadingCreated, ReadingTriage, payload_of
from careloop.services.outbox.models import OutboxMessage

PENDING_KEY = "careloop_outbox_pending"
"""Key in ``session.info`` of the messages this session added (published after commit)."""
TRIAGE_KEY = "careloop_reading_triage"
"""Key in ``session.info`` of the unit of work's ``ReadingTriage``, if it has one."""


def record(session: Session, tenant_id: str, event: Event) -> None:
    """Record ``event`` to be reacted to once the caller's transaction commits."""
    record_message(session, tenant_id, event.type, payload_of(event))


def reading_created(session: Session, tenant_id: str, observation: dict[str, Any]) -> None:
    """Record ``reading.created`` for a stored Observation, triaged if the unit of work can."""
    triage: ReadingTriage | None = session.info.get(TRIAGE_KEY)
    urgent = bool(triage(observation)) if triage is not None else None
    record(session, tenant_id, ReadingCreated(tenant_id, str(observation["id"]), urgent))


def record_message(session: Session, tenant_id: str, name: str, payload: dict[str, Any]) -> None:
    """Record an outbox message by name (an event type, or work replayed from a dead letter)."""
    message = OutboxMessage(tenant_id=tenant_id, task=name, payload=orjson.dumps(payload).decode())
    session.add(message)
    session.info.setdefault(PENDING_KEY, []).append(message)


def pending_ids(session: Session) -> list[int]:
    """Ids of the outbox messages this session wrote (call after commit), and forget them."""
    messages: list[OutboxMessage] = session.info.pop(PENDING_KEY, [])
    return [m.id for m in messages if m.id is not None]


def forget_pending(session: Session) -> None:
    """Forget the messages of a rolled-back transaction: they were never written."""
    session.info.pop(PENDING_KEY, None)
