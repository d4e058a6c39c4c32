"""What every careloop Celery task shares: retries, dead letters and its unit of work.

A task run for an outbox message (task id ``outbox-{id}``) starts by locking its message and
stops at once if it is completed; it completes it in the same transaction that commits its
effect. A retry postpones the message past its countdown; a task failing for good completes it
as dead with its dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from celery import Task
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session

from careloop.services.db import utcnow
from careloop.services.outbox.models import DeadTask
from careloop.services.unit_of_work import session_scope
from careloop.workflows.faults import crash_point
from careloop.workflows.handlers import MAX_RETRIES
from careloop.workflows.outbox import (
    Leases,
    complete,
    message_id,
    postpone,
    recorded_name,
    start,
)
from careloop.workflows.runtime import runtime

log = logging.getLogger("careloop.tasks")
TRANSIENT = (DBAPIError, IntegrityError, ConnectionError, TimeoutError)


class CareloopTask(Task):  # type: ignore[misc]
    """Retries transient failures with backoff and jitter; the last failure is a dead letter."""

    autoretry_for = TRANSIENT
    retry_backoff = True
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = MAX_RETRIES

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Retry later (Celery's retry), keeping the outbox message from being republished first.

        Explicit retries and ``autoretry_for`` both come through here.
        """
        message = message_id(self.request.id)
        if message is not None and not self.request.called_directly:
            if countdown is not None:
                wait = float(countdown)
            elif eta is not None:
                due = eta if eta.tzinfo else eta.replace(tzinfo=UTC)
                wait = (due - utcnow()).total_seconds()
            else:
                wait = float(self.default_retry_delay)
            leases = Leases.from_settings(runtime().settings)
            try:
                with session_scope(runtime().engine) as session:
                    postpone(session, message, max(wait, 0.0) + leases.seconds(self.name))
            except DBAPIError as db_exc:  # the lease still ends, and the relay publishes it then
                log.warning(
                    "could not postpone outbox message %s: %s", message, type(db_exc).__name__
                )
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Record the task in the dead-letter table (ids and the error class only)."""
        log.error("task %s (%s) failed for good: %s", self.name, task_id, type(exc).__name__)
        message = message_id(task_id)
        with session_scope(runtime().engine) as session:
            session.add(
                DeadTask(
                    # What the outbox message recorded (an event), so a replay records it again.
                    task=recorded_name(session, message) or self.name,
                    payload=orjson.dumps(kwargs or {}).decode(),
                    error=type(exc).__name__,
                    attempts=self.request.retries + 1,
                )
            )
            # Replayed by hand from the dead letter, never again by the relay.
            complete(session, message, outcome="dead")


@dataclass
class Work:
    """A task's unit of work: its session, and whether its outbox message still needs it."""

    session: Session
    needed: bool
    """False when the message is completed already (a redelivery): there is nothing to do."""
    done: bool = True
    """Set False when the work is to be retried: the message then stays open."""
    committed: list[int] = field(default_factory=list)
    """The outbox messages the work recorded, once committed (published after the crash point)."""


@contextmanager
def unit_of_work(task: Task) -> Iterator[Work]:
    """The transaction of one run of ``task``, completing its outbox message when it commits.

    Check ``needed`` first: a redelivered message whose work is done has nothing left to do.
    """
    message = message_id(task.request.id)
    if message is not None:
        crash_point("outbox-task-start")
    committed: list[int] = []
    with session_scope(runtime().engine, committed.extend) as session:
        work = Work(session, start(session, message), committed=committed)
        yield work
        if work.needed and work.done:
            complete(session, message)
    if not work.needed:
        log.debug("outbox message %s is completed already; nothing to do", message)
