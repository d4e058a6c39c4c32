"""``careloop audit checkpoint`` and ``careloop audit verify`` on a scratch SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from careloop.services.audit.models import AuditRecord
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.cli.main import app


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir (its own SQLite database) for the process settings."""
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield tmp_path
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def test_verify_passes_then_names_the_first_bad_entry(data_dir: Path) -> None:
    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        for i in range(4):
            session.add(
                AuditRecord(
                    tenant_id="t1",
                    kind="access",
                    action="R",
                    agent="client:c1",
                    entity=f"Observation/o{i}",
                    outcome="success",
                )
            )
    runner = CliRunner()
    made = runner.invoke(app, ["audit", "checkpoint"])
    assert made.exit_code == 0, made.output
    assert "checkpoint tenant=t1 seq=4" in made.stdout
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "ok tenant=t1 entries=4 checkpoints=1" in ok.stdout
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_record SET agent = 'client:x' WHERE seq = 2"))
    bad = runner.invoke(app, ["audit", "verify", "--tenant", "t1"])
    assert bad.exit_code == 1
    assert "FAILED tenant=t1 seq=2: entry altered" in bad.output
    assert "Observation/" not in bad.output
