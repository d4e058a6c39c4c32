"""The transactional outbox: record work with the data, relay it to Celery after commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from careloop.services.db import utcnow
from careloop.workflows.models import OutboxMessage

log = logging.getLogger("careloop.outbox")
_O = OutboxMessage.__table__  # type: ignore[attr-defined]
PENDING_KEY = "careloop_outbox_pending"

Publisher = Callable[[str, dict[str, Any], str], None]
"""Sends one task: (task name, kwargs, task id)."""


def enqueue(session: Session, tenant_id: str, task: str, kwargs: dict[str, Any]) -> None:
    """Record ``task(**kwargs)`` to run once the caller's transaction commits."""
    message = OutboxMessage(tenant_id=tenant_id, task=task, payload=orjson.dumps(kwargs).decode())
    session.add(message)
    session.info.setdefault(PENDING_KEY, []).append(message)


def pending_ids(session: Session) -> list[int]:
    """Ids of the outbox messages this session wrote (call after commit), and forget them."""
    messages: list[OutboxMessage] = session.info.pop(PENDING_KEY, [])
    return [m.id for m in messages if m.id is not None]


def relay(
    engine: Engine, publish: Publisher, ids: list[int] | None = None, limit: int = 500
) -> int:
    """Publish undispatched messages (the given ones, or the oldest) and mark them dispatched.

    Rows are locked with SKIP LOCKED on PostgreSQL so relays never publish a row twice at the
    same time; a crash between publishing and marking publishes it again later, which is safe
    because every task is idempotent.
    """
    with engine.begin() as conn:
        query = select(_O.c.id, _O.c.task, _O.c.payload).where(_O.c.dispatched_at.is_(None))
        if ids is not None:
            if not ids:
                return 0
            query = query.where(_O.c.id.in_(ids))
        query = query.order_by(_O.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        sent = []
        for row in rows:
            try:
                publish(row.task, orjson.loads(row.payload), f"outbox-{row.id}")
            except Exception as exc:  # the broker is down: leave the row for the next relay
                log.warning(
                    "outbox relay could not publish message %s: %s", row.id, type(exc).__name__
                )
                break
            sent.append(row.id)
        if sent:
            conn.execute(update(_O).where(_O.c.id.in_(sent)).values(dispatched_at=utcnow()))
    return len(sent)
