"""Recording events in the caller's transaction, and handing the committed ones on.

Messages are written at once with one multi-row ``INSERT ... RETURNING id`` (no ORM unit of
work): a statement inside a savepoint is rolled back with it, so a message can never outlive
the data it speaks of. The ids are kept in the session and handed on after the commit; an id
whose row was rolled back with a savepoint matches nothing when the relay claims it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlmodel import Session

from careloop.services import telemetry
from careloop.services.common.bulk_insert import insert_rows
from careloop.services.db import utcnow
from careloop.services.outbox.events import Event, ReadingCreated, ReadingTriage, payload_of
from careloop.services.outbox.models import OutboxMessage

PENDING_KEY = "careloop_outbox_pending"
"""Key in ``session.info`` of the ids of the messages this session wrote (published after
commit)."""
TRIAGE_KEY = "careloop_reading_triage"
"""Key in ``session.info`` of the unit of work's ``ReadingTriage``, if it has one."""

_O = OutboxMessage.__table__  # type: ignore[attr-defined]


def record(session: Session, tenant_id: str, event: Event) -> None:
    """Record ``event`` to be reacted to once the caller's transaction commits."""
    record_many(session, tenant_id, [event])


def record_many(session: Session, tenant_id: str, events: Iterable[Event]) -> None:
    """Record ``events`` (one statement for all of them)."""
    record_messages(session, tenant_id, [(e.type, payload_of(e)) for e in events])


def reading_created(session: Session, tenant_id: str, observation: dict[str, Any]) -> None:
    """Record ``reading.created`` for a stored Observation, triaged if the unit of work can."""
    readings_created(session, tenant_id, [observation])


def readings_created(
    session: Session, tenant_id: str, observations: Sequence[dict[str, Any]]
) -> None:
    """Record ``reading.created`` for each stored Observation, in one statement."""
    triage: ReadingTriage | None = session.info.get(TRIAGE_KEY)
    events = [
        ReadingCreated(tenant_id, str(o["id"]), bool(triage(o)) if triage is not None else None)
        for o in observations
    ]
    record_many(session, tenant_id, events)


def record_message(session: Session, tenant_id: str, name: str, payload: dict[str, Any]) -> None:
    """Record an outbox message by name (an event type, or work replayed from a dead letter)."""
    record_messages(session, tenant_id, [(name, payload)])


def record_messages(
    session: Session, tenant_id: str, messages: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Record outbox messages given as ``(name, payload)``, in one statement."""
    if not messages:
        return
    now = utcnow()
    rows = [
        {
            "tenant_id": tenant_id,
            "task": name,
            "payload": orjson.dumps(payload).decode(),
            "created_at": now,
            "available_at": now,
            "attempts": 0,
        }
        for name, payload in messages
    ]
    # Only when traced: untraced rows keep the statement they always had (the column is NULL).
    trace = telemetry.traceparent()
    if trace is not None:
        for row in rows:
            row["traceparent"] = trace
    written(session, [int(r.id) for r in insert_rows(session, _O, rows, returning=("id",))])


def written(session: Session, ids: Iterable[int]) -> None:
    """Note outbox messages this session wrote itself (``INSERT ... RETURNING id``)."""
    session.info.setdefault(PENDING_KEY, []).extend(ids)


def pending_ids(session: Session) -> list[int]:
    """Ids of the outbox messages this session wrote (call after commit), and forget them."""
    ids: list[int] = session.info.pop(PENDING_KEY, [])
    return ids


def forget_pending(session: Session) -> None:
    """Forget the messages of a rolled-back transaction: they were never written."""
    session.info.pop(PENDING_KEY, None)
