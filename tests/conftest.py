"""Shared fixtures: real databases (SQLite file and PostgreSQL), the app and authorised clients.

Every API test runs twice, once per backend. Tests isolate by tenant: each test gets its own
tenant and app client, so no data is shared and no cleanup is needed.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Tests never touch ./data, where `make run` keeps its database and embedded broker: a server
# running there would take the tests' tasks. Whatever reads the process-wide settings (the
# Celery app configures itself on import) gets a scratch data dir of this process, set before
# any careloop module is imported. Inherited CARELOOP_* variables are dropped for the same
# reason (CARELOOP_TEST_PG names the test PostgreSQL and stays).
for _name in [n for n in os.environ if n.startswith("CARELOOP_") and n != "CARELOOP_TEST_PG"]:
    del os.environ[_name]
SCRATCH_DATA_DIR = Path(tempfile.mkdtemp(prefix="careloop-tests-"))
os.environ["CARELOOP_DATA_DIR"] = str(SCRATCH_DATA_DIR)
atexit.register(shutil.rmtree, SCRATCH_DATA_DIR, ignore_errors=True)

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from careloop.services.app import create_app
from careloop.services.db import make_engine, session_scope
from careloop.services.migrate import upgrade
from careloop.services.settings import Environment, Settings
from careloop.services.tenancy.service import create_client

PG_ADMIN_URL = os.environ.get("CARELOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ALL_SCOPES = "system/*.cruds"
BASE_URL = "http://testserver"


def pytest_configure(config: pytest.Config) -> None:
    """Code that reads the process settings (``get_settings()``) has a secret of its own.

    Without one, dev would generate ``<data dir>/secret_key``.
    """
    os.environ.setdefault("CARELOOP_SECRET_KEY", "pytest-process-" + secrets.token_urlsafe(32))


def _pg_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return (
        PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        + f"/{name}"
    )


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, empty database of each backend, shared by the session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "careloop.db"
        yield f"sqlite:///{path}"
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"careloop_test_{worker}_{secrets.token_hex(4)}"
    url = _pg_database(name)
    yield url
    _drop_pg_database(name)


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
        # Made-up destinations under the reserved .example domain, which no DNS answers, count
        # as allow-listed; the egress rules themselves are tested in tests/egress.
        egress_allow=".example",
    )


@pytest.fixture(scope="session")
def app_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """An HTTP client talking to the careloop app in-process."""
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as client:
        yield client


@dataclass
class Caller:
    """An app client of a fresh tenant, holding a bearer token."""

    http: TestClient
    client_id: str
    client_secret: str
    tenant: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        """POST JSON with the bearer token."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.post(url, json=json, headers=headers, **kwargs)

    def patch(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        """PATCH JSON with the bearer token."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.patch(url, json=json, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        """GET with the bearer token."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.get(url, headers=headers, **kwargs)


def token_for(http: TestClient, client_id: str, secret: str, scope: str | None = None) -> str:
    """An access token by client_secret_post."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope:
        form["scope"] = scope
    response = http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def make_caller(
    http: TestClient, engine: Engine, scope: str = ALL_SCOPES, tenant: str | None = None
) -> Caller:
    """Register a client (in a new tenant unless named) and fetch its token."""
    tenant = tenant or f"tenant-{uuid.uuid4().hex[:10]}"
    with session_scope(engine) as session:
        new = create_client(session, "test app", scope, tenant)
    assert new.client_secret is not None
    token = token_for(http, new.client_id, new.client_secret)
    return Caller(
        http, new.client_id, new.client_secret, tenant, token, {"Authorization": f"Bearer {token}"}
    )


@pytest.fixture
def caller(app_client: TestClient, engine: Engine) -> Caller:
    """An app client with every scope, in its own tenant."""
    return make_caller(app_client, engine)


def phq9(
    value: str = "p-001",
    answers: list[int] | None = None,
    effective: str = "2026-11-20T09:30:00Z",
    **extra: Any,
) -> dict[str, Any]:
    """A synthetic PHQ-9 report."""
    return {
        "patient": {"system": "https://app.example/patients", "value": value},
        "instrument": "phq-9",
        "answers": answers if answers is not None else [1, 2, 0, 1, 3, 0, 1, 0, 1],
        "effective": effective,
        **extra,
    }
