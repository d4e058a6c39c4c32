"""Celery tasks. Each takes ids, opens its own unit of work, and is safe to run twice.

A task run for an outbox message (task id ``outbox-{id}``) starts by locking its message and
stops at once if it is completed; it completes it in the same transaction that commits its
effect. A retry postpones the message past its countdown; a task failing for good completes it
as dead with its dead letter.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from celery import Task
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, col

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import escalate
from careloop.services.alerts.vocabulary import AlertStatus
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection
from careloop.services.outbox.models import DeadTask
from careloop.services.unit_of_work import session_scope
from careloop.workflows.celery_app import celery_app
from careloop.workflows.delivery import backoff, crash_point
from careloop.workflows.ehr.circuit import CircuitOpen
from careloop.workflows.evaluation import scan_missed_checkins
from careloop.workflows.handlers import EHR_FAILURES, HANDLERS, MAX_RETRIES, record_ehr_failure
from careloop.workflows.outbox import (
    Leases,
    complete,
    message_id,
    postpone,
    prune,
    recorded_name,
    relay,
    start,
)
from careloop.workflows.routing import router_for
from careloop.workflows.runtime import runtime
from careloop.workflows.task_names import TaskName

log = logging.getLogger("careloop.tasks")
RELAY_BATCH = 500
PRUNE_BATCH = 10_000
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


def outbox_task(name: TaskName) -> Task:
    """The Celery task ``name``: a thin wrapper running its handler from ``HANDLERS``.

    Retries the work when the handler says so, and EHR failures with backoff (an open circuit
    after it closes); passes the handler's crash point once the work is committed.
    """
    handler = HANDLERS[name]

    @celery_app.task(name=name.value, base=CareloopTask, bind=True, max_retries=handler.max_retries)
    def run(self: Task, **kwargs: Any) -> object:
        try:
            with unit_of_work(self) as work:
                if not work.needed:
                    return handler.already_done
                outcome = handler.handle(work.session, runtime().settings, **kwargs)
                work.done = outcome.done
        except EHR_FAILURES as exc:
            if not handler.ehr:
                raise
            raise _ehr_retry(self, exc, kwargs["connection_id"]) from exc
        if handler.crash_after is not None:
            crash_point(handler.crash_after)
        publish_committed(work.committed)
        if not outcome.done:
            raise self.retry(countdown=outcome.retry_in, max_retries=None)
        return outcome.value

    return run


def _ehr_retry(task: Task, exc: Exception, connection_id: str) -> Exception:
    """The Retry for a transient EHR failure (recorded against the connection's circuit)."""
    rt = runtime()
    record_ehr_failure(rt.engine, rt.settings, exc, connection_id)
    if isinstance(exc, CircuitOpen):
        return task.retry(countdown=exc.retry_in + random.uniform(0, 2))  # type: ignore[no-any-return]
    retry_after = exc.retry_after if isinstance(exc, EhrError) else None
    return task.retry(countdown=backoff(task.request.retries, retry_after))  # type: ignore[no-any-return]


evaluate_urgent = outbox_task(TaskName.OBSERVATION_EVALUATE_URGENT)
evaluate = outbox_task(TaskName.OBSERVATION_EVALUATE)
deliver = outbox_task(TaskName.NOTIFICATION_DELIVER)
ehr_push = outbox_task(TaskName.EHR_PUSH)
ehr_pull = outbox_task(TaskName.EHR_PULL)


@celery_app.task(name=TaskName.EHR_PULL_ALL.value, base=CareloopTask)
def ehr_pull_all() -> int:
    """Schedule a pull from every active EHR connection."""
    with session_scope(runtime().engine) as session:
        query = select(EhrConnection).where(col(EhrConnection.active))
        ids = [c.id for c in session.execute(query).scalars().all()]
    for connection_id in ids:
        ehr_pull.delay(connection_id=connection_id)
    return len(ids)


@celery_app.task(name=TaskName.ALERTS_ESCALATE_DUE.value, base=CareloopTask)
def escalate_due() -> int:
    """Escalate every open alert whose acknowledgement is overdue."""
    rt = runtime()
    now = utcnow()
    count = 0
    with session_scope(rt.engine, publish_committed) as session:
        query = (
            select(Alert)
            .where(col(Alert.status) == AlertStatus.OPEN, col(Alert.next_escalation_at) <= now)
            .order_by(col(Alert.next_escalation_at))
            .limit(200)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for alert in session.execute(query).scalars().all():
            escalate(session, rt.settings, alert, now)
            count += 1
    return count


@celery_app.task(name=TaskName.CHECKINS_SCAN.value, base=CareloopTask)
def checkins_scan() -> int:
    """Open missed check-in alerts."""
    rt = runtime()
    with session_scope(rt.engine, publish_committed) as session:
        count = scan_missed_checkins(session, rt.settings, utcnow())
    return count


@celery_app.task(name=TaskName.OUTBOX_RELAY.value, base=CareloopTask)
def relay_outbox() -> int:
    """Publish open outbox messages that are due: never published (a crash, a broker outage),
    or published but not completed within their lease (a worker died with them)."""
    rt = runtime()
    leases = Leases.from_settings(rt.settings)
    route = router_for(rt.settings)
    sent = total = relay(rt.engine, publish, limit=RELAY_BATCH, leases=leases, route=route)
    # A backlog (after a broker outage) drains in full batches until the next beat tick.
    deadline = utcnow() + timedelta(seconds=1)
    while sent == RELAY_BATCH and utcnow() < deadline:
        sent = relay(rt.engine, publish, limit=RELAY_BATCH, leases=leases, route=route)
        total += sent
    return total


@celery_app.task(name=TaskName.OUTBOX_PRUNE.value, base=CareloopTask)
def prune_outbox() -> int:
    """Delete outbox messages completed longer ago than the retention period."""
    rt = runtime()
    return prune(rt.engine, timedelta(days=rt.settings.outbox_retention_days), PRUNE_BATCH, 60)


def publish(task: str, kwargs: dict[str, Any], task_id: str) -> None:
    """Send one task to the broker."""
    celery_app.send_task(task, kwargs=kwargs, task_id=task_id)


def publish_committed(ids: list[int]) -> None:
    """Hand-off of a worker's units of work: publish the outbox messages they committed.

    Not with ``relay_after_commit`` off: then beat's relay (or, in tests, ``run_pending``) takes
    the work from the outbox, as it does for the API.
    """
    rt = runtime()
    if not ids or not rt.settings.relay_after_commit:
        return
    leases = Leases.from_settings(rt.settings)
    relay(rt.engine, publish, ids, leases=leases, route=router_for(rt.settings))


__all__ = ["backoff"]
