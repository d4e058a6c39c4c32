"""Migration 0010 chains the audit records written before it, in the order they were written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlmodel import Session

from careloop.services.audit.verify import verify
from careloop.services.db import make_engine
from careloop.services.migrate import alembic_config


def test_existing_records_are_chained(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0010-1")
        for i, tenant in enumerate(["t1", "t2", "t1", "t1"]):
            connection.execute(
                text(
                    "INSERT INTO audit_record (tenant_id, recorded, kind, action, agent, purpose,"
                    " entity, destination, outcome) VALUES (:t, :r, 'access', 'R', 'client:c',"
                    " '', :e, '', 'success')"
                ),
                {
                    "t": tenant,
                    "r": datetime(2026, 1, 1, 0, 0, i, 1234, tzinfo=UTC).replace(tzinfo=None),
                    "e": f"Observation/o{i}",
                },
            )
        command.upgrade(config, "0010")
        rows = connection.execute(text("SELECT tenant_id, seq FROM audit_record ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("t1", 1), ("t2", 1), ("t1", 2), ("t1", 3)]
    with Session(engine) as session:
        results = verify(session)
    assert [(r.tenant_id, r.entries, r.problem) for r in results] == [
        ("t1", 3, None),
        ("t2", 1, None),
    ]
    engine.dispose()
