"""The research export under test: the real ``careloop export`` command on the session database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select
from support.clients import Caller
from typer.testing import CliRunner, Result

from careloop.services.db import get_engine
from careloop.services.settings import get_settings
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.cli.main import app

KEY = "research-key-" + "k" * 32
"""A synthetic de-identification key (32+ characters)."""

Export = Callable[..., Result]


@pytest.fixture
def export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[Export]:
    """Invoke ``careloop export ...`` in-process against the session database.

    The settings are read again at every call, so a test may change the environment between
    calls (``monkeypatch.setenv``); the data dir is the test's own.
    """
    monkeypatch.setenv("CARELOOP_DATABASE_URL", database_url)
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CARELOOP_DEIDENTIFY_KEY", KEY)
    get_settings.cache_clear()
    get_engine.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        get_settings.cache_clear()
        result = runner.invoke(app, ["export", *args])
        assert result.exit_code == code, (args, result.output)
        return result

    yield invoke
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


@pytest.fixture
def tenant(engine: Engine, caller: Caller) -> str:
    """The id of the caller's tenant (the export's ``--tenant``)."""
    with session_scope(engine) as session:
        return str(session.exec(select(Tenant.id).where(Tenant.name == caller.tenant)).one())
