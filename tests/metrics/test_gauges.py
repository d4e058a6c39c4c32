"""Gauges read at scrape time: outbox backlog and age, unevaluated readings, dead tasks, EHR
circuits (database) and queue depth (Redis, RabbitMQ), cached between scrapes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from kombu import Connection, Exchange, Producer, Queue
from metrics_helpers import Scrape, delta
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, delete
from support.clients import Caller
from support.reports import phq9

from careloop.services.db import utcnow
from careloop.services.metrics.broker import queue_names
from careloop.services.metrics.collector import StateGauges, broker_gauges
from careloop.services.outbox.models import DeadTask
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.celery_app import queues

BROKERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}


def test_backlog_age_and_unevaluated_readings_follow_the_outbox(
    app_caller: Caller, drain: Callable[[], int], scrape: Callable[[], Scrape]
) -> None:
    drain()
    before = scrape()
    assert before.value("careloop_readings_unevaluated") == 0
    for day in (1, 2):
        body = phq9("g-backlog", effective=f"2026-11-{day:02d}T09:00:00Z")
        assert app_caller.post("/v1/symptom-reports", json=body).status_code == 201
    waiting = scrape()
    assert delta(before, waiting, "careloop_readings_unevaluated") == 2
    assert delta(before, waiting, "careloop_outbox_backlog") >= 2
    assert waiting.value("careloop_outbox_oldest_age_seconds") >= 0
    drain()
    done = scrape()
    assert done.value("careloop_readings_unevaluated") == 0
    assert done.value("careloop_outbox_backlog") == before.value("careloop_outbox_backlog")


def _dead(engine: Engine) -> int:
    with session_scope(engine) as session:
        dead = DeadTask(task="notification.requested", payload="{}", error="test", attempts=8)
        session.add(dead)
        session.flush()
        assert dead.id is not None
        return dead.id


def test_dead_tasks_count_until_replayed(
    metrics_engine: Engine, scrape: Callable[[], Scrape]
) -> None:
    before = scrape()
    dead_id = _dead(metrics_engine)
    assert delta(before, scrape(), "careloop_dead_tasks") == 1
    with session_scope(metrics_engine) as session:
        row = session.get(DeadTask, dead_id)
        assert row is not None
        row.replayed_at = utcnow()
        session.add(row)
    assert delta(before, scrape(), "careloop_dead_tasks") == 0


def test_gauges_are_cached_between_scrapes(
    metrics_engine: Engine, metrics_settings: Settings
) -> None:
    cached = StateGauges(
        metrics_engine, metrics_settings.model_copy(update={"metrics_cache_seconds": 60})
    )
    fresh = StateGauges(metrics_engine, metrics_settings)

    def dead_tasks(gauges: StateGauges) -> float:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(gauges)
        value = Scrape(generate_latest(registry).decode()).value("careloop_dead_tasks")
        return value

    first, first_fresh = dead_tasks(cached), dead_tasks(fresh)
    dead_id = _dead(metrics_engine)
    try:
        assert dead_tasks(cached) == first  # within the cache time: not read again
        assert dead_tasks(fresh) == first_fresh + 1
    finally:
        with session_scope(metrics_engine) as session:
            session.execute(delete(DeadTask).where(DeadTask.id == dead_id))  # type: ignore[arg-type]


def test_an_open_circuit_shows_per_connection(
    metrics_engine: Engine, app_caller: Caller, scrape: Callable[[], Scrape]
) -> None:
    from careloop.services.ehr.models import EhrConnection
    from careloop.services.tenancy.service import get_or_create_tenant

    with session_scope(metrics_engine) as session:
        tenant_id = get_or_create_tenant(session, app_caller.tenant).id
        connection = EhrConnection(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            name="circuit",
            fhir_base_url="https://ehr.example/fhir",
            client_id="c",
            scope="system/*.rs",
        )
        session.add(connection)
    assert scrape().value("careloop_ehr_circuit_open", connection=connection.id) == 0
    with session_scope(metrics_engine) as session:
        row = session.get(EhrConnection, connection.id)
        assert row is not None
        row.circuit_open_until = utcnow() + timedelta(minutes=5)
        session.add(row)
    assert scrape().value("careloop_ehr_circuit_open", connection=connection.id) == 1
    with session_scope(metrics_engine) as session:
        row = session.get(EhrConnection, connection.id)
        assert row is not None
        row.circuit_open_until = utcnow() - timedelta(seconds=1)  # its time ran out: closed
        session.add(row)
    assert scrape().value("careloop_ehr_circuit_open", connection=connection.id) == 0


def test_queue_names_are_the_workers(metrics_settings: Settings) -> None:
    assert set(queue_names(metrics_settings)) == set(queues(metrics_settings))


@pytest.mark.parametrize("broker", sorted(BROKERS))
def test_queue_depth_counts_waiting_messages(broker: str, metrics_settings: Settings) -> None:
    url = BROKERS[broker]
    settings = metrics_settings.model_copy(update={"queue": f"metrics-{uuid.uuid4().hex[:10]}"})
    urgent, ehr, routine = queue_names(settings)
    with Connection(url) as connection:
        queue = Queue(urgent, Exchange(urgent, type="direct"), routing_key=urgent)
        producer = Producer(connection.channel())
        try:
            for n in range(3):
                producer.publish(
                    {"n": n}, exchange=queue.exchange, routing_key=urgent, declare=[queue]
                )
            text = generate_latest(_registry(broker_gauges(url, (urgent, ehr, routine)))).decode()
            depths = Scrape(text)
            assert depths.value("careloop_queue_depth", queue=urgent) == 3
            assert depths.value("careloop_queue_depth", queue=ehr) == 0
            assert depths.has("careloop_queue_depth", queue=routine)
        finally:
            queue.bind(connection.channel()).delete()
            queue.exchange.bind(connection.channel()).delete()


def _registry(metrics: list[object]) -> CollectorRegistry:
    class Fixed:
        def collect(self) -> list[object]:
            return metrics

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())  # type: ignore[arg-type]
    return registry
