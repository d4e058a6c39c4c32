"""Shared fixtures: real databases (SQLite file and PostgreSQL), the app and authorised clients.

Helpers that are not fixtures (callers, reports, scratch databases, processes) live in
``tests/support``; tests import them from there, never from a conftest.

Every API test runs twice, once per backend. Tests isolate by tenant: each test gets its own
tenant and app client, so no data is shared and no cleanup is needed.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Tests never touch ./data, where `make run` keeps its database and embedded broker: a server
# running there would take the tests' tasks. Whatever reads the process-wide settings (the
# Celery app configures itself on import) gets a scratch data dir of this process, set before
# any careloop module is imported. Inherited CARELOOP_* variables are dropped for the same
# reason (CARELOOP_TEST_PG names the test PostgreSQL and CARELOOP_TEST_ARTIFACTS where the
# browser tests save screenshots: both stay).
_KEPT = ("CARELOOP_TEST_PG", "CARELOOP_TEST_ARTIFACTS")
for _name in [n for n in os.environ if n.startswith("CARELOOP_") and n not in _KEPT]:
    del os.environ[_name]
SCRATCH_DATA_DIR = Path(tempfile.mkdtemp(prefix="careloop-tests-"))
os.environ["CARELOOP_DATA_DIR"] = str(SCRATCH_DATA_DIR)
# Every resource careloop builds is validated as it is built, in every test and in the servers
# the tests start (production skips that check: tests/fhir/test_builders_valid.py is the proof).
os.environ["CARELOOP_CHECK_OWN_FHIR"] = "true"
atexit.register(shutil.rmtree, SCRATCH_DATA_DIR, ignore_errors=True)

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller
from support.databases import fresh_pg_database
from support.smtp import SmtpServer, smtp_server

from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import Environment, Settings
from careloop.workflows.web import create_app


def pytest_configure(config: pytest.Config) -> None:
    """Code that reads the process settings (``get_settings()``) has a secret of its own.

    Without one, dev would generate ``<data dir>/secret_key``.
    """
    os.environ.setdefault("CARELOOP_SECRET_KEY", "pytest-process-" + secrets.token_urlsafe(32))


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database of each backend, shared by the session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "careloop.db"
        yield f"sqlite:///{path}"
        return
    with fresh_pg_database("test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The engine of the session's database, migrated to the newest schema."""
    eng = make_engine(database_url, pool_size=5)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Test settings pointing at the session database (no relay: API tests run no worker)."""
    return Settings(
        environment=Environment.test,
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        secret_key="test-secret-" + "x" * 32,
        base_url=BASE_URL,
        relay_after_commit=False,
        # One test client makes every test's tokens: rate limits are tested on their own.
        rate_limit_token_per_client="",
        rate_limit_token_per_ip="",
        rate_limit_api_per_client="",
        rate_limit_login_per_ip="",
        # Made-up destinations under the reserved .example domain, which no DNS answers, count
        # as allow-listed; the egress rules themselves are tested in tests/egress.
        egress_allow=".example",
        # EHR tests record no consent: their tenants' policy permits EHR sync. The safe default
        # (no EHR sync without the patient's consent) is tested in tests/consent.
        consent_defaults="ehr-sync=permit",
    )


@pytest.fixture(scope="session")
def app_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """An HTTP client talking to the careloop app in-process."""
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def caller(app_client: TestClient, engine: Engine) -> Caller:
    """An app client with every scope, in its own tenant."""
    return make_caller(app_client, engine)


@pytest.fixture(scope="session")
def scratch_data_dir() -> Path:
    """The data dir of this test process's settings (never ./data)."""
    return SCRATCH_DATA_DIR


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on loopback, recording what it accepts."""
    with smtp_server() as server:
        yield server
