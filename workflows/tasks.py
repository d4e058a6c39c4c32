"""Celery tasks. Each takes ids, opens its own unit of work, and is safe to run twice."""

from __future__ import annotations

import logging
import random
from typing import Any

import orjson
from celery import Task
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.integrations.ehr.smart import SmartError
from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import escalate
from careloop.services.db import session_scope, utcnow
from careloop.services.ehr.models import EhrConnection
from careloop.workflows.celery_app import celery_app
from careloop.workflows.delivery import backoff, crash_point, deliver_notification
from careloop.workflows.ehr_pull import pull
from careloop.workflows.ehr_sync import CircuitOpen, connection_failed, push_to_ehr
from careloop.workflows.evaluation import evaluate_observation, scan_missed_checkins
from careloop.workflows.models import DeadTask
from careloop.workflows.outbox import relay
from careloop.workflows.runtime import runtime

log = logging.getLogger("careloop.tasks")
TRANSIENT = (DBAPIError, IntegrityError, ConnectionError, TimeoutError)


class CareloopTask(Task):  # type: ignore[misc]
    """Retries transient failures with backoff and jitter; the last failure is a dead letter."""

    autoretry_for = TRANSIENT
    retry_backoff = True
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 8

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """Record the task in the dead-letter table (ids and the error class only)."""
        log.error("task %s (%s) failed for good: %s", self.name, task_id, type(exc).__name__)
        with session_scope(runtime().engine) as session:
            session.add(
                DeadTask(
                    task=self.name,
                    payload=orjson.dumps(kwargs or {}).decode(),
                    error=type(exc).__name__,
                    attempts=self.request.retries + 1,
                )
            )


@celery_app.task(name="observation.evaluate_urgent", base=CareloopTask)
def evaluate_urgent(tenant_id: str, observation_id: str) -> list[str]:
    """``observation.evaluate`` for a reading critical by itself, on the urgent queue."""
    return list(evaluate(tenant_id, observation_id))


@celery_app.task(name="observation.evaluate", base=CareloopTask)
def evaluate(tenant_id: str, observation_id: str) -> list[str]:
    """Evaluate a new reading against the care program; open or update alerts."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        alerts = evaluate_observation(session, rt.settings, tenant_id, observation_id)
        ids = [a.id for a in alerts]
    crash_point("after-evaluate-commit")
    publish_pending(session)
    return ids


@celery_app.task(name="notification.deliver", base=CareloopTask, bind=True)
def deliver(self: Task, notification_id: str) -> bool:
    """Deliver one notification; retryable failures come back with backoff."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        outcome = deliver_notification(session, rt.settings, notification_id)
    crash_point("after-deliver-commit")
    publish_pending(session)
    if not outcome.done:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return True


def _ehr_retry(task: Task, exc: Exception, connection_id: str) -> Exception:
    """The Retry for a transient EHR failure (recorded against the connection's circuit)."""
    if isinstance(exc, CircuitOpen):
        return task.retry(countdown=exc.retry_in + random.uniform(0, 2))  # type: ignore[no-any-return]
    if not getattr(exc, "transient", False):
        raise exc
    rt = runtime()
    with session_scope(rt.engine) as session:
        connection_failed(session, rt.settings, connection_id, str(exc))
    retry_after = exc.retry_after if isinstance(exc, EhrError) else None
    return task.retry(countdown=backoff(task.request.retries, retry_after))  # type: ignore[no-any-return]


@celery_app.task(name="ehr.push", base=CareloopTask, bind=True, max_retries=None)
def ehr_push(self: Task, connection_id: str, patient_id: str, references: list[str]) -> str:
    """Write a patient's new resources into one EHR; transient failures retry with backoff."""
    rt = runtime()
    try:
        with session_scope(rt.engine) as session:
            state = push_to_ehr(session, rt.settings, connection_id, patient_id, references)
        publish_pending(session)
        return state
    except (CircuitOpen, EhrError, SmartError) as exc:
        raise _ehr_retry(self, exc, connection_id) from exc


@celery_app.task(name="ehr.pull", base=CareloopTask, bind=True, max_retries=20)
def ehr_pull(self: Task, connection_id: str) -> dict[str, Any]:
    """Incrementally read care plans, goals, care teams and Task status from one EHR."""
    rt = runtime()
    try:
        with session_scope(rt.engine) as session:
            connection = session.get(EhrConnection, connection_id)
            if connection is None or not connection.active:
                return {}
            result = pull(session, rt.settings, connection)
        publish_pending(session)
        return {"imported": result.imported, "tasks": result.tasks_applied}
    except (CircuitOpen, EhrError, SmartError) as exc:
        raise _ehr_retry(self, exc, connection_id) from exc


@celery_app.task(name="ehr.pull_all", base=CareloopTask)
def ehr_pull_all() -> int:
    """Schedule a pull from every active EHR connection."""
    with session_scope(runtime().engine) as session:
        query = select(EhrConnection).where(col(EhrConnection.active))
        ids = [c.id for c in session.execute(query).scalars().all()]
    for connection_id in ids:
        ehr_pull.delay(connection_id=connection_id)
    return len(ids)


@celery_app.task(name="alerts.escalate_due", base=CareloopTask)
def escalate_due() -> int:
    """Escalate every open alert whose acknowledgement is overdue."""
    rt = runtime()
    now = utcnow()
    count = 0
    with session_scope(rt.engine) as session:
        query = (
            select(Alert)
            .where(col(Alert.status) == "open", col(Alert.next_escalation_at) <= now)
            .order_by(col(Alert.next_escalation_at))
            .limit(200)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for alert in session.execute(query).scalars().all():
            escalate(session, rt.settings, alert, now)
            count += 1
    publish_pending(session)
    return count


@celery_app.task(name="checkins.scan", base=CareloopTask)
def checkins_scan() -> int:
    """Open missed check-in alerts."""
    rt = runtime()
    with session_scope(rt.engine) as session:
        count = scan_missed_checkins(session, rt.settings, utcnow())
    publish_pending(session)
    return count


@celery_app.task(name="outbox.relay", base=CareloopTask)
def relay_outbox() -> int:
    """Publish outbox messages no one published yet (after a crash, or a broker outage)."""
    return relay(runtime().engine, publish)


def publish(task: str, kwargs: dict[str, Any], task_id: str) -> None:
    """Send one task to the broker."""
    celery_app.send_task(task, kwargs=kwargs, task_id=task_id)


def publish_pending(session: Any) -> None:
    """Relay what a just-committed unit of work put in the outbox.

    Not with ``relay_after_commit`` off: then beat's relay (or, in tests, ``run_pending``) takes
    the work from the outbox, as it does for the API.
    """
    from careloop.workflows.outbox import pending_ids

    if not runtime().settings.relay_after_commit:
        return
    ids = pending_ids(session)
    if ids:
        relay(runtime().engine, publish, ids)


__all__ = ["backoff"]
