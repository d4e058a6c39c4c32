"""A dead worker never loses or long-delays an alert: real Redis and RabbitMQ, README defaults.

Nothing is tuned for the test: the Redis visibility timeout and the outbox leases are the
defaults the README documents. A worker is SIGKILLed right after critical reports are accepted
(or dies as it starts the first task it took from the broker, the message already popped);
after a restart every critical patient is paged exactly once within 30 s, and every outbox
message is completed exactly once, nothing lost or doubled.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from amqp.exceptions import ChannelError
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from support.clients import BASE_URL, Caller, make_caller
from support.databases import fresh_pg_database
from support.processes import start_careloop, stop
from support.reports import phq9
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.integrations.egress.destinations import DestinationPolicy
from careloop.services.alerts.models import Alert, Notification, ProcessedReading
from careloop.services.alerts.routes_service import add_route
from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.outbox.models import DeadTask, OutboxMessage
from careloop.services.settings import Environment, Settings
from careloop.services.tenancy.service import get_or_create_tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows import runtime
from careloop.workflows.celery_app import celery_app, configure_celery, queues
from careloop.workflows.web import create_app

BROKERS = {
    # A Redis database of its own: kombu keeps one index of unacknowledged messages per database,
    # and any consumer restores from it after its own visibility timeout, so a test elsewhere
    # running workers with a short timeout would bring back our dead worker's messages for us.
    "redis": "redis://127.0.0.1:6379/13",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}
ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 2]
ROUTINE = [1, 1, 0, 1, 0, 0, 1, 0, 0]
PAGE_WITHIN = 30.0
FIGURES: list[str] = []
"""Restart-to-all-pages times, printed at the end of the module (``-s`` shows them)."""


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own (workers in other processes reach it)."""
    with fresh_pg_database("killed") as url:
        engine = make_engine(url, pool_size=2)
        upgrade(engine)
        engine.dispose()
        yield url
    for line in FIGURES:
        print(line)


@pytest.fixture(params=sorted(BROKERS))
def readme_settings(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path
) -> Iterator[Settings]:
    """Settings as the README's "Running at scale" has them: only URLs, a queue of our own."""
    settings = Settings(
        environment=Environment.test,
        database_url=pg_url,
        broker_url=BROKERS[request.param],
        queue=f"careloop-killed-{os.getpid()}-{secrets.token_hex(4)}",
        data_dir=tmp_path,
        secret_key="test-secret-" + "x" * 32,
        base_url=BASE_URL,
    )
    assert settings.redis_visibility_timeout == 300  # the documented default, not shortened
    configure_celery(settings)
    yield settings
    with celery_app.connection_for_write() as connection:
        for queue in queues(settings):
            connection.default_channel.queue_delete(queue=queue)
    celery_app.close()


@pytest.fixture
def engine(readme_settings: Settings) -> Iterator[Engine]:
    """The engine for the module database."""
    eng = make_engine(readme_settings.resolved_database_url, pool_size=5)
    runtime.configure(readme_settings, eng)
    yield eng
    eng.dispose()


def _worker(settings: Settings, log: Path, crash_at: str | None = None) -> subprocess.Popen[bytes]:
    # `careloop worker` as the README runs it (threads, concurrency 4), logging at INFO.
    return start_careloop(settings, ["worker", "--loglevel", "INFO"], log, crash_at)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took (fails after ``timeout``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not reached in {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def _tenant_id(engine: Engine, caller: Caller) -> str:
    with session_scope(engine) as session:
        return get_or_create_tenant(session, caller.tenant).id


def _count(engine: Engine, query: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(query).one())


def _readings(engine: Engine, tenant_id: str) -> int:
    return _count(
        engine,
        select(func.count())
        .select_from(ProcessedReading)
        .where(ProcessedReading.tenant_id == tenant_id),
    )


def _paged_patients(receiver: Receiver) -> set[str]:
    return {d["body"]["patient"] for d in receiver.deliveries}


def _open_messages(engine: Engine, tenant_id: str) -> int:
    return _count(
        engine,
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.tenant_id == tenant_id, col(OutboxMessage.completed_at).is_(None)),
    )


def _queued(settings: Settings) -> int:
    """Messages waiting in this test's queues."""
    total = 0
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in queues(settings):
            try:
                total += channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError:  # Redis: an empty queue has no key
                continue
    return total


@pytest.mark.parametrize("death", ["sigkill-after-accept", "crash-at-task-start"])
def test_a_dead_worker_never_loses_or_long_delays_an_alert(
    readme_settings: Settings, engine: Engine, tmp_path: Path, death: str
) -> None:
    settings = readme_settings
    logs = {name: tmp_path / f"{name}.log" for name in ("beat", "doomed", "survivor")}
    with (
        TestClient(create_app(settings, engine), base_url=BASE_URL) as api,
        webhook_receiver(generate_webhook_secret()) as receiver,
    ):
        caller = make_caller(api, engine)
        tenant_id = _tenant_id(engine, caller)
        with session_scope(engine) as session:
            add_route(
                session,
                tenant_id,
                "oncall",
                "webhook",
                receiver.url,
                receiver.secret,
                destinations=DestinationPolicy.create(production=False),
            )
        beat = start_careloop(settings, ["beat", "--loglevel", "INFO"], logs["beat"])
        crash_at = "outbox-task-start" if death == "crash-at-task-start" else None
        doomed = _worker(settings, logs["doomed"], crash_at)
        survivor: subprocess.Popen[bytes] | None = None
        try:
            if crash_at is None:
                # The worker consumes: a routine report of another patient gets evaluated.
                warm = caller.post("/v1/symptom-reports", json=phq9("warm-up", ROUTINE))
                assert warm.status_code == 201
                _wait(lambda: _readings(engine, tenant_id) == 1, 60, "the worker is consuming")
            reports = [phq9(f"critical-{n}", ITEM9) for n in range(3)]
            reports += [phq9(f"routine-{n}", ROUTINE) for n in range(2)]
            accepted = caller.post("/v1/symptom-reports/batch", json={"reports": reports})
            if crash_at is None:
                os.kill(doomed.pid, signal.SIGKILL)  # right after the 201s
            assert accepted.status_code == 200, accepted.text
            results = accepted.json()["results"]
            assert [r["status"] for r in results] == [201] * 5
            critical = {r["patient"] for r in results[:3]}
            assert len(critical) == 3
            assert doomed.wait(timeout=60) in (-signal.SIGKILL, 137)
            paged_before_restart = _paged_patients(receiver) & critical

            survivor = _worker(settings, logs["survivor"])
            took = _wait(
                lambda: critical <= _paged_patients(receiver),
                PAGE_WITHIN,
                "every critical patient paged after the restart",
            )
            FIGURES.append(
                f"{settings.broker_url.split(':')[0]} {death}: all {len(critical)} critical "
                f"patients paged {took:.1f} s after the restart "
                f"({len(paged_before_restart)} paged before the kill)"
            )
            # Routine work the dead worker took (an evaluation of a routine report) comes back
            # when its longer lease ends.
            everything = settings.outbox_lease_routine_seconds + 30
            took = _wait(
                lambda: _open_messages(engine, tenant_id) == 0, everything, "all work completed"
            )
            FIGURES.append(f"  and all outbox work completed {took:.1f} s after that")
            # Duplicates a broker may still hand out (RabbitMQ requeues what the dead worker
            # held) run and find their message completed.
            _wait(lambda: _queued(settings) == 0, 60, "the queues drained")
        finally:
            for process in (survivor, doomed, beat):
                if process is not None:
                    stop(process)

        with Session(engine) as session:
            alerts = session.exec(select(Alert).where(Alert.tenant_id == tenant_id)).all()
            notifications = session.exec(
                select(Notification).where(Notification.tenant_id == tenant_id)
            ).all()
            readings = session.exec(
                select(ProcessedReading).where(ProcessedReading.tenant_id == tenant_id)
            ).all()
            outbox = session.exec(
                select(OutboxMessage).where(OutboxMessage.tenant_id == tenant_id)
            ).all()
            dead = session.exec(select(func.count()).select_from(DeadTask)).one()
        assert sorted(f"Patient/{a.patient_id}" for a in alerts) == sorted(critical)
        assert all(a.severity == "critical" and a.occurrences == 1 for a in alerts)
        assert len(notifications) == 3 and {n.status for n in notifications} == {"delivered"}
        # Exactly one page per critical patient: one webhook each, no webhook-id twice.
        assert len(receiver.deliveries) == 3
        assert receiver.unique_ids() == {n.id for n in notifications}
        assert len(readings) == 5 + (0 if crash_at else 1)  # every reading evaluated once
        assert all(m.outcome == "done" for m in outbox)
        assert dead == 0

        beat_log = logs["beat"].read_text()
        worker_log = logs["survivor"].read_text()
        # Beat's relay every 2 s logs nothing at INFO, the real work still does.
        assert "beat: Starting" in beat_log
        assert "outbox.relay" not in beat_log and "outbox-relay" not in beat_log
        assert "observation.evaluate_urgent[outbox-" in worker_log
        assert "outbox.relay[" not in worker_log  # (the banner lists the task)
