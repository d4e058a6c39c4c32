"""Fixtures of the metrics tests: careloop on databases of their own, scraped with a token.

The metrics tests run the outbox work in-process (``run_pending``), which takes every due
message of its database: on the shared session database it would also run other tests' work
and move the counters they compare. So these tests get a SQLite file and a PostgreSQL database
of their own (per test process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from metrics_helpers import TOKEN, Scrape, settings_for
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller
from support.databases import fresh_pg_database
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def metrics_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the metrics tests' own, of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('metrics-db') / 'careloop.db'}"
        return
    with fresh_pg_database("metrics") as url:
        yield url


@pytest.fixture(scope="session")
def metrics_engine(metrics_database: str) -> Iterator[Engine]:
    """The module database's engine, migrated."""
    engine = make_engine(metrics_database, pool_size=5)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def metrics_settings(metrics_database: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the module database."""
    return settings_for(metrics_database, tmp_path_factory.mktemp("metrics-data"))


@pytest.fixture(scope="session")
def api(metrics_settings: Settings, metrics_engine: Engine) -> Iterator[TestClient]:
    """careloop in-process on the module database."""
    with TestClient(create_app(metrics_settings, metrics_engine), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def app_caller(api: TestClient, metrics_engine: Engine) -> Caller:
    """An app client with every scope, in a tenant of its own."""
    return make_caller(api, metrics_engine)


@pytest.fixture
def drain(metrics_engine: Engine, metrics_settings: Settings) -> Callable[[], int]:
    """Run the module database's due outbox work (what the Celery tasks run)."""
    return lambda: run_pending(metrics_engine, metrics_settings)


@pytest.fixture
def scrape(api: TestClient) -> Callable[[], Scrape]:
    """GET /metrics with the token."""

    def get() -> Scrape:
        response = api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return Scrape(response.text)

    return get


@pytest.fixture
def oncall(app_caller: Caller) -> Iterator[Receiver]:
    """A verified webhook receiver registered as the tenant's on-call channel."""
    with webhook_receiver(generate_webhook_secret()) as receiver:
        route = {
            "recipient": "oncall",
            "channel": "webhook",
            "address": receiver.url,
            "secret": receiver.secret,
        }
        assert app_caller.post("/v1/notification-routes", json=route).status_code == 201
        yield receiver
