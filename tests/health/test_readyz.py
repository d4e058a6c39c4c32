"""``/healthz`` and ``/readyz`` on real databases and brokers, and what they say when one fails."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from support.clients import BASE_URL
from support.databases import fresh_pg_database
from support.processes import free_port

from careloop.services.app import create_app
from careloop.services.db import make_engine
from careloop.services.health import Readiness, process_alive
from careloop.services.migrate import alembic_config, upgrade
from careloop.services.settings import Environment, Settings

PASSWORD = "s3cret-pw-never-shown"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def bare_settings(tmp_path: Path) -> Settings:
    """Settings of no database in particular (each test hands the app its engine)."""
    return Settings(
        environment=Environment.test,
        data_dir=tmp_path,
        secret_key="test-secret-" + "x" * 32,
        base_url=BASE_URL,
        relay_after_commit=False,
    )


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database (the broker tests need some database that answers)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'careloop.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _client(settings: Settings, engine: Engine, **changes: Any) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes), engine), base_url=BASE_URL)


def _failed(response: Any) -> dict[str, str]:
    """The failed checks a 503 names: {check: reason}."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    named = {}
    for issue in outcome["issue"]:
        assert issue["severity"] == "error" and issue["code"] == "transient"
        name, reason = issue["diagnostics"].split(": ", 1)
        named[name] = reason
    return named


def _assert_reveals_nothing(text_: str, *secrets: str) -> None:
    for secret in (PASSWORD, "Traceback", "127.0.0.1", "postgres", *secrets):
        assert secret not in text_


def test_ready_on_a_migrated_database(app_client: TestClient) -> None:
    response = app_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "broker": "skipped"},
    }
    assert response.headers["cache-control"] == "no-store"
    assert app_client.get("/healthz").json() == {"status": "ok"}


def test_neither_is_in_the_openapi_schema_nor_needs_a_token(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    assert "/healthz" not in paths and "/readyz" not in paths
    # No Authorization header anywhere above: both answer without one.


@pytest.fixture
def dead_database_engine() -> Iterator[Engine]:
    """An engine whose PostgreSQL port nothing listens on, with a password in its URL."""
    engine = make_engine(f"postgresql+psycopg://careloop:{PASSWORD}@127.0.0.1:{free_port()}/x", 2)
    yield engine
    engine.dispose()


def test_unreachable_database_is_named_and_nothing_leaks(
    bare_settings: Settings, dead_database_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), _client(bare_settings, dead_database_engine) as client:
        response = client.get("/readyz")
        assert _failed(response) == {"database": "unreachable (OperationalError)"}
        _assert_reveals_nothing(response.text)
        assert client.get("/healthz").status_code == 200  # alive all the same
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "careloop.health")
    assert "not ready: database: unreachable" in logged
    _assert_reveals_nothing(logged)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung server)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield int(server.getsockname()[1])


def test_a_hanging_database_times_out_instead_of_hanging_the_probe(
    bare_settings: Settings, silent_port: int
) -> None:
    # connect_timeout here only for the CSP middleware's own query of the EHR origins, which
    # would otherwise wait on the silent server as long as the kernel lets it; the check bounds
    # its own connection.
    url = f"postgresql+psycopg://careloop@127.0.0.1:{silent_port}/x?connect_timeout=2"
    engine = make_engine(url, 2)
    readiness = Readiness(engine, timeout=0.3)
    app = create_app(bare_settings, engine)
    app.state.readiness = readiness
    with TestClient(app, base_url=BASE_URL) as client:
        started = time.monotonic()
        assert _failed(client.get("/readyz")) == {"database": "timed out"}
        # A second probe waits for the same stuck run: still one thread, still bounded.
        assert _failed(client.get("/readyz")) == {"database": "timed out"}
        # The stuck check gives up by itself (libpq's connect_timeout, 2 s at least), so a
        # database that answers again is seen by the next run.
        inflight = readiness._inflight
        assert inflight is not None
        results = inflight.result(timeout=10)
        assert str(results["database"]) == "unreachable (OperationalError)"
        assert time.monotonic() - started < 10
    engine.dispose()


def _previous_of_head() -> str:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_revision(script.get_current_head())
    assert head is not None and isinstance(head.down_revision, str)
    return head.down_revision


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
        yield engine
        engine.dispose()
        return
    with fresh_pg_database("health") as url:
        engine = make_engine(url, 2)
        yield engine
        engine.dispose()


def _migrate_to(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_a_schema_behind_the_code_is_not_ready(
    bare_settings: Settings, empty_database: Engine
) -> None:
    with _client(bare_settings, empty_database) as client:
        never_migrated = client.get("/readyz")
        assert _failed(never_migrated) == {
            "schema": "behind this code's migrations (run careloop migrate)"
        }
    _migrate_to(empty_database, _previous_of_head())
    with _client(bare_settings, empty_database) as client:
        assert set(_failed(client.get("/readyz"))) == {"schema"}
        upgrade(empty_database)  # careloop migrate, while the process runs
        assert client.get("/readyz").status_code == 200


def test_a_schema_ahead_of_the_code_is_ready_and_left_alone(
    bare_settings: Settings, empty_database: Engine
) -> None:
    upgrade(empty_database)
    with _client(bare_settings, empty_database) as client:
        assert client.get("/readyz").status_code == 200
        # A newer release migrates further (its revision unknown to this code) ...
        with empty_database.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
        # ... a process that saw its schema current stays ready (rolling upgrade: the old
        # processes serve until the new ones replace them) ...
        assert client.get("/readyz").status_code == 200
    # ... and so does a process of this code starting now (a rollback): careloop's migrations
    # keep the schema usable by the release before. Starting does not try to migrate it back.
    assert upgrade(empty_database) is False
    with _client(bare_settings, empty_database) as client:
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["schema"] == "ahead"
        assert "f00dfeedbeef" not in response.text
    with empty_database.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == "f00dfeedbeef"


@pytest.mark.parametrize("broker", [RABBITMQ, REDIS])
def test_ready_with_a_reachable_broker(
    bare_settings: Settings, sqlite_engine: Engine, broker: str
) -> None:
    with _client(bare_settings, sqlite_engine, broker_url=broker) as client:
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["broker"] == "ok"


@pytest.mark.parametrize("scheme", ["amqp", "redis"])
def test_unreachable_broker_is_named_and_nothing_leaks(
    bare_settings: Settings, sqlite_engine: Engine, scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"{scheme}://guest:{PASSWORD}@127.0.0.1:{free_port()}//"
    if scheme == "redis":
        url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    with (
        caplog.at_level(logging.INFO),
        _client(bare_settings, sqlite_engine, broker_url=url) as client,
    ):
        response = client.get("/readyz")
        failed = _failed(response)
        assert list(failed) == ["broker"] and failed["broker"].startswith("unreachable (")
        _assert_reveals_nothing(response.text, "guest")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    _assert_reveals_nothing(logged, "guest")


@pytest.mark.parametrize("scheme", ["amqp", "redis"])
def test_a_hanging_broker_is_unready_and_the_checks_go_on(
    sqlite_engine: Engine, silent_port: int, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{silent_port}/" + ("0" if scheme == "redis" else "/")
    readiness = Readiness(sqlite_engine, broker_url=url, timeout=0.3, broker_cache_seconds=0)
    failed = {n: str(r) for n, r in anyio.run(readiness.run).items() if str(r) != "ok"}
    assert set(failed) == {"broker"}
    # The check itself gave up (its socket operations are bounded): the next run is a new one,
    # and it sees the broker that answers now.
    readiness.broker_url = RABBITMQ
    assert anyio.run(readiness.run)["broker"] == "ok"


def test_the_broker_check_is_cached_for_a_few_seconds(sqlite_engine: Engine) -> None:
    calls: list[int] = []
    readiness = Readiness(sqlite_engine, broker_url=RABBITMQ, broker_cache_seconds=60)
    real = readiness._connect_broker

    def counted() -> str | None:
        calls.append(1)
        return real()

    readiness._connect_broker = counted  # type: ignore[method-assign]
    for _ in range(3):
        assert readiness.check_broker() == "ok"
    assert len(calls) == 1


def test_the_embedded_worker_is_checked_when_serve_started_one(
    bare_settings: Settings, sqlite_engine: Engine
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    with _client(bare_settings, sqlite_engine, embedded_worker_pid=child.pid) as client:
        assert _failed(client.get("/readyz")) == {"broker": "the embedded worker is not running"}
    with _client(bare_settings, sqlite_engine, embedded_worker_pid=os.getpid()) as client:
        assert client.get("/readyz").json()["checks"]["broker"] == "ok"


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    assert not process_alive(child.pid)
    child.wait(timeout=5)
    assert not process_alive(child.pid)
    assert process_alive(os.getpid())
