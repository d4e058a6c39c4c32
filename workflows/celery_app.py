"""The Celery app: brokers, reliability settings and the beat schedule.

The app is configured by whoever runs it (``careloop worker``/``beat``, the API's relay, tests)
with ``configure_celery(settings)``; importing this module reads no settings.
"""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from careloop.services.settings import Settings
from careloop.workflows.outbox import URGENT_TASKS
from careloop.workflows.prompt_polling import PromptPolling
from careloop.workflows.task_names import TaskName

RELAY_SECONDS = 2.0
ESCALATION_SECONDS = 15.0
CHECKIN_SECONDS = 600.0
PRUNE_SECONDS = 600.0
ANALYZE_SECONDS = 60.0
AUDIT_CHECKPOINT_SECONDS = 3600.0
POLLING_TASKS = frozenset({TaskName.OUTBOX_RELAY, TaskName.ALERTS_ESCALATE_DUE})
"""Beat's frequent polls: Celery's lines about them are DEBUG (they log their own real work)."""


celery_app = Celery("careloop", include=["careloop.workflows.tasks"])
"""Unconfigured until ``configure_celery``: it then knows its broker, queues and schedule."""
celery_app.steps["worker"].add(PromptPolling)


def urgent_queue(settings: Settings) -> str:
    """The queue of alert work."""
    return f"{settings.queue}.urgent"


EHR_TASKS = frozenset({TaskName.EHR_PUSH, TaskName.EHR_PULL})
"""EHR sync: its own queue, so a push never waits behind a backlog of routine evaluations."""


def ehr_queue(settings: Settings) -> str:
    """The queue of EHR sync work."""
    return f"{settings.queue}.ehr"


def queues(settings: Settings) -> tuple[str, ...]:
    """Every queue a worker takes work from: alert work, EHR sync, the rest."""
    return urgent_queue(settings), ehr_queue(settings), settings.queue


def _every(task: TaskName, seconds: float) -> dict[str, object]:
    """A beat schedule entry: run ``task`` every ``seconds``."""
    return {"task": task.value, "schedule": seconds}


def configure_celery(settings: Settings, app: Celery = celery_app) -> Celery:
    """Point ``app`` at the broker of ``settings`` (Redis, RabbitMQ or embedded SQLite)."""
    broker = settings.resolved_broker_url
    app.close()  # drop connections made for an earlier configuration
    app.__dict__.pop("amqp", None)  # and the queue routing and producers cached with it
    options: dict[str, object] = {}
    if broker.startswith(("redis://", "rediss://")):
        # Redis gives a message that was taken but not acknowledged back after this long. The
        # outbox does not depend on it (a message a dead worker took is published again when
        # its lease ends), so careloop's default of 300 s is fine; it should exceed a task's run
        # time and longest retry countdown, or Redis hands the message out twice (harmless too).
        options["visibility_timeout"] = settings.redis_visibility_timeout
        # Ask for the queues in their listed order every time (kombu rotates them by default),
        # so a worker with a free thread takes alert work first.
        options["queue_order_strategy"] = "priority"
    app.conf.update(
        broker_url=broker,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        # Alert work (deliveries, escalations, readings that may be critical) has a queue of its
        # own, so it never waits behind a backlog of routine evaluations or EHR writes.
        task_queues=tuple(Queue(name) for name in queues(settings)),
        # The relay too: it is what publishes lost alert work again.
        task_routes={
            **{
                name.value: {"queue": urgent_queue(settings)}
                for name in URGENT_TASKS | {TaskName.OUTBOX_RELAY}
            },
            **{name.value: {"queue": ehr_queue(settings)} for name in EHR_TASKS},
        },
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=options,
        worker_hijack_root_logger=False,
        beat_schedule={
            "outbox-relay": _every(TaskName.OUTBOX_RELAY, RELAY_SECONDS),
            "outbox-prune": _every(TaskName.OUTBOX_PRUNE, PRUNE_SECONDS),
            "db-analyze": _every(TaskName.DB_ANALYZE, ANALYZE_SECONDS),
            "audit-checkpoint": _every(TaskName.AUDIT_CHECKPOINT, AUDIT_CHECKPOINT_SECONDS),
            "alerts-escalate": _every(TaskName.ALERTS_ESCALATE_DUE, ESCALATION_SECONDS),
            "checkins-scan": _every(TaskName.CHECKINS_SCAN, CHECKIN_SECONDS),
            "ehr-pull": _every(TaskName.EHR_PULL_ALL, settings.ehr_pull_minutes * 60),
        },
    )
    return app
