"""The Celery app: brokers, reliability settings and the beat schedule."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from careloop.services.settings import Settings, get_settings

RELAY_SECONDS = 2.0
ESCALATION_SECONDS = 15.0
CHECKIN_SECONDS = 600.0


celery_app = Celery("careloop", include=["careloop.workflows.tasks"])


def urgent_queue(settings: Settings) -> str:
    """The queue of alert work."""
    return f"{settings.queue}.urgent"


def configure_celery(settings: Settings, app: Celery = celery_app) -> Celery:
    """Point ``app`` at the broker of ``settings`` (Redis, RabbitMQ or embedded SQLite)."""
    broker = settings.resolved_broker_url
    app.close()  # drop connections made for an earlier configuration
    app.__dict__.pop("amqp", None)  # and the queue routing and producers cached with it
    options: dict[str, object] = {}
    if broker.startswith(("redis://", "rediss://")):
        # Nothing waits long in the broker (timers are due times in the database), so this only
        # needs to exceed a task's run time; a killed worker's tasks come back after it.
        options["visibility_timeout"] = settings.redis_visibility_timeout
        # kombu sweeps for unacknowledged messages of dead workers every interval x throttle
        # seconds (100 s by default); sweep every few seconds so a lost task comes back soon
        # after its visibility timeout.
        options["unacked_restore_interval"] = max(1, min(10, settings.redis_visibility_timeout))
        options["unacked_restore_throttle"] = 1
    app.conf.update(
        broker_url=broker,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        # Alert work (deliveries, escalations, readings that may be critical) has a queue of its
        # own, so it never waits behind a backlog of routine evaluations or EHR writes.
        task_queues=(Queue(urgent_queue(settings)), Queue(settings.queue)),
        task_routes={
            "notification.deliver": {"queue": urgent_queue(settings)},
            "observation.evaluate_urgent": {"queue": urgent_queue(settings)},
            "alerts.escalate_due": {"queue": urgent_queue(settings)},
        },
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options=options,
        worker_hijack_root_logger=False,
        beat_schedule={
            "outbox-relay": {"task": "outbox.relay", "schedule": RELAY_SECONDS},
            "alerts-escalate": {"task": "alerts.escalate_due", "schedule": ESCALATION_SECONDS},
            "checkins-scan": {"task": "checkins.scan", "schedule": CHECKIN_SECONDS},
            "ehr-pull": {"task": "ehr.pull_all", "schedule": settings.ehr_pull_minutes * 60},
        },
    )
    return app


configure_celery(get_settings())
