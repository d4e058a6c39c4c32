"""Beat refreshes stale planner statistics: a changed table is analysed, an unchanged one not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from support.databases import fresh_pg_database

from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.table_statistics import TABLES, analyze_stale_tables


@pytest.fixture
def young_database() -> Iterator[Engine]:
    """A new, migrated PostgreSQL database of its own (its statistics start empty)."""
    with fresh_pg_database("stats") as url:
        engine = make_engine(url, 2)
        upgrade(engine)
        try:
            yield engine
        finally:
            engine.dispose()


def _analysed(engine: Engine, table: str) -> bool:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :t"), {"t": table}
        ).one()
    return row.last_analyze is not None


def test_a_table_that_changed_is_analysed_once_then_left_alone(young_database: Engine) -> None:
    with young_database.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox_message (tenant_id, task, payload, created_at, available_at,"
                " attempts) SELECT 't', 'x', '{}', now(), now(), 0 FROM generate_series(1, 500)"
            )
        )
        conn.execute(text("SELECT pg_stat_force_next_flush()"))
    assert not _analysed(young_database, "outbox_message")
    assert analyze_stale_tables(young_database) == ["outbox_message"]
    assert _analysed(young_database, "outbox_message")
    assert not _analysed(young_database, "fhir_resource")  # unchanged: not analysed
    assert analyze_stale_tables(young_database) == []


def test_on_sqlite_nothing_is_analysed(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/stats.db")
    assert analyze_stale_tables(engine) == []
    assert "fhir_resource" in TABLES
