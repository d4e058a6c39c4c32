"""The outbox's consuming side: relay messages to Celery, complete them in the database.

Services record the messages (``services.outbox``); this module publishes them and keeps the
books on them.

The database, not the broker, owns completion. A message is open until the task that runs it
commits its effect and, in the same transaction, marks it completed. Publishing gives it a lease
(seconds for urgent work, minutes for routine work, growing with each publication); an open
message whose lease ran out is published again. So work a dead worker took with it (a Redis
message popped but never acknowledged, a task killed half way) runs again soon, and a second
delivery of finished work finds the message completed and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, bindparam, delete, select, update
from sqlmodel import Session

from careloop.services import telemetry
from careloop.services.db import utcnow
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Settings
from careloop.workflows.task_names import TaskName

log = logging.getLogger("careloop.outbox")
_O = OutboxMessage.__table__  # type: ignore[attr-defined]
TASK_ID_PREFIX = "outbox-"

URGENT_TASKS = frozenset(
    {
        TaskName.NOTIFICATION_DELIVER,
        TaskName.OBSERVATION_EVALUATE_URGENT,
        TaskName.ALERTS_ESCALATE_DUE,
    }
)
"""Alert work: its own queue, and short leases so a lost message is published again in seconds."""

Publisher = Callable[[str, dict[str, Any], str], None]
"""Sends one task: (task name, kwargs, task id)."""

Router = Callable[[Connection, Sequence[Any]], list[str | None]]
"""The Celery task that runs each claimed message (rows with ``id``, ``task``, ``payload``).

None: an earlier message of the same batch is published for it (its task's run does the work
of both, see ``workflows.handlers.Handler.drains``); it is leased like a published one, so it
is published itself if that run does not complete it within the lease.
"""


def by_name(_conn: Connection, rows: Sequence[Any]) -> list[str | None]:
    """Each message runs the task it names (work replayed from a dead letter, tests)."""
    return [row.task for row in rows]


@dataclass(frozen=True)
class Leases:
    """How long a published message may stay open before it is published again."""

    urgent_seconds: float = 10.0
    routine_seconds: float = 120.0
    max_doublings: int = 3
    """Each publication doubles the lease, this many times at most, so work that keeps failing
    to complete (workers down, a backlog) is not republished in a flood."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Leases:
        """The leases configured in ``settings``."""
        return cls(
            settings.outbox_lease_urgent_seconds,
            settings.outbox_lease_routine_seconds,
            settings.outbox_lease_max_doublings,
        )

    def seconds(self, task: str, attempts: int = 1) -> float:
        """The lease of the ``attempts``-th publication of ``task``."""
        base = self.urgent_seconds if task in URGENT_TASKS else self.routine_seconds
        return float(base * 2 ** min(max(attempts - 1, 0), self.max_doublings))


def task_id(message_id: int) -> str:
    """The Celery task id of an outbox message."""
    return f"{TASK_ID_PREFIX}{message_id}"


def message_id(celery_task_id: str | None) -> int | None:
    """The outbox message a Celery task id stands for; None for work not from the outbox."""
    if not celery_task_id or not celery_task_id.startswith(TASK_ID_PREFIX):
        return None
    number = celery_task_id[len(TASK_ID_PREFIX) :]
    return int(number) if number.isdigit() else None


def _claim(conn: Connection, ids: list[int] | None, limit: int, now: datetime) -> list[Any]:
    """Take the due open messages (the given ones, or the oldest due) for this transaction.

    An UPDATE, not a SELECT, so the claim is atomic on SQLite too (it takes the write lock);
    on PostgreSQL the rows are locked with SKIP LOCKED, so concurrent relays never take the same
    message, and a message whose task is running (its row locked by that task) is left alone.
    """
    due = select(_O.c.id).where(_O.c.completed_at.is_(None), _O.c.available_at <= now)
    if ids is not None:
        due = due.where(_O.c.id.in_(ids))
    due = due.order_by(_O.c.available_at).limit(limit)
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        update(_O)
        .where(_O.c.id.in_(due.scalar_subquery()))
        .values(attempts=_O.c.attempts + 1)
        .returning(_O.c.id, _O.c.task, _O.c.payload, _O.c.attempts, _O.c.traceparent)
    )
    return sorted(conn.execute(claim).all(), key=lambda row: row.id)


def relay(
    engine: Engine,
    publish: Publisher,
    ids: list[int] | None = None,
    limit: int = 500,
    leases: Leases | None = None,
    route: Router = by_name,
) -> int:
    """Publish due open messages (all the given ones, or the oldest ``limit``); how many
    (those published with another's task included).

    ``route`` names the task that reacts to each message (an event's, see ``workflows.routing``),
    or says another message's task does its work.

    Each published message gets a lease: unless its task completes it first, it is due again
    when the lease ends. A crash between publishing and committing publishes it again later,
    which is safe because every task is idempotent.
    """
    if ids is not None:
        if not ids:
            return 0
        limit = len(ids)
    leases = leases or Leases()
    now = utcnow()
    with engine.begin() as conn:
        rows = _claim(conn, ids, limit, now)
        tasks = route(conn, rows) if rows else []
        sent: list[dict[str, Any]] = []
        unsent: list[int] = []
        covered = 0
        for row, task in zip(rows, tasks, strict=True):
            if unsent:
                unsent.append(row.id)
                continue
            try:
                if task is not None:
                    # In the trace the message was recorded in (no-op when tracing is off).
                    with telemetry.publishing(row.traceparent):
                        publish(task, orjson.loads(row.payload), task_id(row.id))
                else:
                    covered += 1
            except Exception as exc:  # the broker is down: leave the rest for the next relay
                log.warning(
                    "outbox relay could not publish message %s: %s", row.id, type(exc).__name__
                )
                unsent.append(row.id)
                continue
            # Work covered by another message's run is routine work (an EHR push).
            lease = timedelta(seconds=leases.seconds(task or "", row.attempts))
            sent.append({"m_id": row.id, "m_due": now + lease, "m_now": now})
        if sent:
            conn.execute(
                update(_O)
                .where(_O.c.id == bindparam("m_id"))
                .values(available_at=bindparam("m_due"), dispatched_at=bindparam("m_now")),
                sent,
            )
        if unsent:
            conn.execute(update(_O).where(_O.c.id.in_(unsent)).values(attempts=_O.c.attempts - 1))
    again = sum(1 for row in rows if row.attempts > 1 and row.id not in unsent)
    # Publishing fresh work is routine; publishing again means a worker lost or overran it.
    log.log(
        logging.INFO if again else logging.DEBUG,
        "outbox relay published %d messages (%d again, their lease ran out; %d with another's)",
        len(sent) - covered,
        again,
        covered,
    )
    return len(sent)


def start(session: Session, message: int | None) -> bool:
    """Begin the work of outbox message ``message`` in ``session``; False if it is done already.

    On PostgreSQL the message's row stays locked until the session ends, so the relay does not
    publish it again while its task runs, and a second delivery waits, then finds it completed.
    Work not from the outbox (``message`` None) always runs.
    """
    if message is None:
        return True
    query = select(_O.c.completed_at).where(_O.c.id == message).with_for_update()
    row = session.execute(query).first()
    # A missing row was completed and pruned long ago.
    return row is not None and row.completed_at is None


def recorded_name(session: Session, message: int | None) -> str | None:
    """The name outbox message ``message`` was recorded under (its event type)."""
    if message is None:
        return None
    name = session.execute(select(_O.c.task).where(_O.c.id == message)).scalar_one_or_none()
    return str(name) if name is not None else None


def complete(session: Session, message: int | None, outcome: str = "done") -> None:
    """Mark outbox message ``message`` completed, in the transaction that commits its effect."""
    if message is None:
        return
    session.execute(
        update(_O)
        .where(_O.c.id == message, _O.c.completed_at.is_(None))
        .values(completed_at=utcnow(), outcome=outcome)
    )


def postpone(session: Session, message: int | None, seconds: float) -> None:
    """Keep open message ``message`` from being published again for ``seconds`` (a retry waits)."""
    if message is None:
        return
    session.execute(
        update(_O)
        .where(_O.c.id == message, _O.c.completed_at.is_(None))
        .values(available_at=utcnow() + timedelta(seconds=seconds))
    )


def prune(engine: Engine, older_than: timedelta, batch: int = 5000, rounds: int = 20) -> int:
    """Delete messages completed more than ``older_than`` ago, in bounded batches; how many."""
    cutoff = utcnow() - older_than
    deleted = 0
    for _ in range(rounds):
        with engine.begin() as conn:
            old = (
                select(_O.c.id)
                .where(_O.c.completed_at < cutoff)
                .order_by(_O.c.completed_at)
                .limit(batch)
            )
            count = conn.execute(delete(_O).where(_O.c.id.in_(old.scalar_subquery()))).rowcount
        deleted += count
        if count < batch:
            break
    if deleted:
        log.info("pruned %d outbox messages completed before %s", deleted, cutoff.isoformat())
    return deleted
