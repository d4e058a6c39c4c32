"""A worker asks its broker for the next message promptly once a thread frees up.

kombu's Redis transport asks (BRPOP) only at the start of an event-loop turn, and a finished
thread does not wake the loop: without a timer the loop sleeps a second between turns, and under
load every hop of an alert waited about that long (``bench/alert_latency.py``).
"""

from __future__ import annotations

from types import SimpleNamespace

from kombu.asynchronous import Hub

from careloop.services.settings import Settings
from careloop.workflows.celery_app import celery_app, configure_celery, queues, urgent_queue
from careloop.workflows.prompt_polling import TICK_SECONDS, PromptPolling


def test_a_hub_with_the_step_sleeps_at_most_a_tick() -> None:
    idle, prompt = Hub(), Hub()
    PromptPolling(SimpleNamespace()).start(SimpleNamespace(hub=prompt))
    # fire_timers answers how long the loop may sleep before its next turn.
    assert idle.fire_timers() == 1
    for _ in range(3):
        assert prompt.fire_timers() <= TICK_SECONDS
    idle.close()
    prompt.close()


def test_a_worker_without_an_event_loop_is_left_alone() -> None:
    PromptPolling(SimpleNamespace()).start(SimpleNamespace(hub=None))


def test_every_worker_runs_the_step() -> None:
    assert PromptPolling in celery_app.steps["worker"]


def test_redis_serves_alert_work_first(settings: Settings) -> None:
    redis = settings.model_copy(
        update={"broker_url": "redis://127.0.0.1:6379/15", "queue": "careloop-prompt"}
    )
    configure_celery(redis)
    try:
        options = celery_app.conf.broker_transport_options
        # "priority": BRPOP lists the queues in this order every time, not rotated.
        assert options["queue_order_strategy"] == "priority"
        assert queues(redis)[0] == urgent_queue(redis)
    finally:
        celery_app.close()
