"""The workflows on the real brokers: Redis and RabbitMQ, real workers, a real receiver.

A threshold-crossing report posted to the API reaches a signed webhook through the outbox, the
broker and a worker; and a worker killed at the worst moments neither loses nor repeats the alert.
Brokers run with the README's defaults: what a dead worker took comes back through its outbox
lease, not a shortened Redis visibility timeout.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select
from support.clients import BASE_URL, make_caller
from support.databases import fresh_pg_database
from support.processes import start_careloop, stop
from support.reports import phq9
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.integrations.egress import DestinationPolicy
from careloop.services.alerts.models import Alert, Notification
from careloop.services.alerts.routes_service import add_route
from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import Environment, Settings
from careloop.services.tenancy.service import get_or_create_tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows import runtime
from careloop.workflows.celery_app import celery_app, configure_celery
from careloop.workflows.web import create_app

BROKERS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}
ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 2]
# One queue per test process: parallel test runs share the brokers.
QUEUE = f"careloop-test-{os.getpid()}-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own (workers in other processes reach it)."""
    with fresh_pg_database("brokers") as url:
        engine = make_engine(url, pool_size=2)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(params=sorted(BROKERS))
def broker_settings(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path
) -> Iterator[Settings]:
    """Settings on one real broker, with a queue of this test's own."""
    settings = Settings(
        environment=Environment.test,
        database_url=pg_url,
        broker_url=BROKERS[request.param],
        queue=QUEUE,
        data_dir=tmp_path,
        secret_key="test-secret-" + "x" * 32,
        base_url=BASE_URL,
    )
    configure_celery(settings)
    yield settings
    celery_app.close()


@pytest.fixture
def engine(broker_settings: Settings) -> Iterator[Engine]:
    """The engine for the module database."""
    eng = make_engine(broker_settings.resolved_database_url, pool_size=5)
    runtime.configure(broker_settings, eng)
    yield eng
    eng.dispose()


@pytest.fixture
def api(broker_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The API, relaying outbox work to the broker after each commit."""
    with TestClient(create_app(broker_settings, engine), base_url=BASE_URL) as client:
        yield client


def _route_oncall(engine: Engine, tenant: str, receiver: Receiver) -> None:
    with session_scope(engine) as session:
        tenant_id = get_or_create_tenant(session, tenant).id
        add_route(
            session,
            tenant_id,
            "oncall",
            "webhook",
            receiver.url,
            receiver.secret,
            destinations=DestinationPolicy.create(production=False),
        )


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a database condition until it holds (bounded), as a clinician's screen would."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_report_to_signed_webhook_through_the_broker(api: TestClient, engine: Engine) -> None:
    caller = make_caller(api, engine)
    with (
        webhook_receiver(generate_webhook_secret()) as receiver,
        start_worker(
            celery_app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
        ),
    ):
        _route_oncall(engine, caller.tenant, receiver)
        response = caller.post("/v1/symptom-reports", json=phq9("br-1", ITEM9))
        assert response.status_code == 201
        [delivery] = receiver.wait_for(1)
    assert delivery["body"]["severity"] == "critical"
    assert delivery["body"]["rule"] == "phq9-item9"
    assert delivery["body"]["patient"] == response.json()["patient"]


def _worker(
    settings: Settings, crash_at: str | None, beat: bool = False
) -> subprocess.Popen[bytes]:
    command = ["worker", "--pool", "solo", "--concurrency", "1", "--loglevel", "WARNING"]
    return start_careloop(settings, [*command, "--beat"] if beat else command, crash_at=crash_at)


@pytest.mark.parametrize(
    "crash_at", ["after-send", "after-deliver-commit", "after-evaluate-commit"]
)
def test_a_killed_worker_neither_loses_nor_repeats_the_alert(
    broker_settings: Settings, engine: Engine, crash_at: str
) -> None:
    settings = broker_settings.model_copy(update={"relay_after_commit": True})
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        with webhook_receiver(generate_webhook_secret()) as receiver:
            _route_oncall(engine, caller.tenant, receiver)
            doomed = _worker(settings, crash_at)
            try:
                assert (
                    caller.post("/v1/symptom-reports", json=phq9("kw-1", ITEM9)).status_code == 201
                )
                assert doomed.wait(timeout=60) == 137, "the worker should die at the crash point"
                survivor = _worker(settings, None, beat=True)
                try:
                    _wait(lambda: _delivered(engine, caller.tenant))
                    if crash_at != "after-send":
                        receiver.wait_for(1)
                finally:
                    stop(survivor)
            finally:
                stop(doomed)
            with session_scope(engine) as session:
                alerts = _tenant_rows(session, Alert, caller.tenant)
                notifications = _tenant_rows(session, Notification, caller.tenant)
            assert len(alerts) == 1
            assert len(notifications) == 1 and notifications[0].status == "delivered"
            # A receiver deduplicates on webhook-id (Standard Webhooks): exactly one alert reached
            # it. Only a crash between sending and recording can make it see the id twice.
            assert receiver.unique_ids() == {notifications[0].id}
            if crash_at != "after-send":
                assert len(receiver.deliveries) == 1
            communications = api.get(
                "/fhir/Communication",
                headers=caller.headers,
                params={"about": f"Task/{alerts[0].task_id}"},
            ).json()
            assert communications["total"] == 1


def _tenant_rows(session: Any, model: Any, tenant: str) -> list[Any]:
    tenant_id = get_or_create_tenant(session, tenant).id
    return list(session.exec(select(model).where(model.tenant_id == tenant_id)).all())


def _delivered(engine: Engine, tenant: str) -> bool:
    with session_scope(engine) as session:
        rows = _tenant_rows(session, Notification, tenant)
    return bool(rows) and all(n.status == "delivered" for n in rows)
