"""The Celery tasks: one per outbox handler (``workflows.handlers``), and beat's polls.

Each takes ids, runs in its own unit of work (``workflows.task_base``) and is safe to run twice.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

from celery import Task
from sqlalchemy import select
from sqlmodel import col

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import escalate
from careloop.services.alerts.vocabulary import AlertStatus
from careloop.services.audit.checkpoints import checkpoint_all
from careloop.services.bulk import prune_exports
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection
from careloop.services.table_statistics import analyze_stale_tables
from careloop.services.unit_of_work import session_scope
from careloop.workflows.backoff import backoff
from careloop.workflows.celery_app import celery_app
from careloop.workflows.ehr.circuit import CircuitOpen
from careloop.workflows.evaluation import scan_missed_checkins
from careloop.workflows.faults import crash_point
from careloop.workflows.handlers import EHR_FAILURES, HANDLERS, record_ehr_failure
from careloop.workflows.outbox import (
    Leases,
    prune,
    relay,
)
from careloop.workflows.routing import router_for
from careloop.workflows.runtime import runtime
from careloop.workflows.task_base import CareloopTask, unit_of_work
from careloop.workflows.task_names import TaskName

log = logging.getLogger("careloop.tasks")
RELAY_BATCH = 500
PRUNE_BATCH = 10_000


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
bulk_export = outbox_task(TaskName.BULK_EXPORT)


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
    """Delete outbox messages completed longer ago than the retention period (and expired or
    cancelled bulk exports with their files)."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        prune_exports(session)
    return prune(rt.engine, timedelta(days=rt.settings.outbox_retention_days), PRUNE_BATCH, 60)


@celery_app.task(name=TaskName.DB_ANALYZE.value, base=CareloopTask)
def analyze_tables() -> int:
    """Refresh stale planner statistics (see ``services.table_statistics``); how many tables."""
    return len(analyze_stale_tables(runtime().engine))


@celery_app.task(name=TaskName.AUDIT_CHECKPOINT.value, base=CareloopTask)
def audit_checkpoint() -> int:
    """Sign a checkpoint of every audit chain that grew (``careloop audit verify`` checks them)."""
    with session_scope(runtime().engine) as session:
        made = checkpoint_all(session, runtime().settings.secret_key)
    return len(made)


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
