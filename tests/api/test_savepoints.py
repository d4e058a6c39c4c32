"""A savepoint's rows belong to their unit of work: its rollback takes them too, on SQLite as well.

pysqlite opens a transaction only before a write; a SAVEPOINT after reads alone used to start
one of its own, whose release committed (a failed batch Bundle kept its earlier entries).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from careloop.services.tenancy.models import UsedAssertion
from careloop.services.unit_of_work import savepoint

EXPIRES = datetime.now(UTC) + timedelta(hours=1)


def _stored(engine: Engine, client_id: str) -> list[str]:
    with Session(engine) as session:
        rows = session.execute(
            select(UsedAssertion.jti).where(UsedAssertion.client_id == client_id)  # type: ignore[arg-type]
        )
        return sorted(rows.scalars())


def test_a_savepoint_after_reads_only_rolls_back_with_its_unit_of_work(engine: Engine) -> None:
    client = f"sp-{uuid.uuid4().hex}"
    with Session(engine) as session:
        assert _stored(engine, client) == []
        session.execute(select(UsedAssertion).limit(1)).all()  # reads only, so far
        with savepoint(session):
            session.add(UsedAssertion(client_id=client, jti="first", expires_at=EXPIRES))
        session.add(UsedAssertion(client_id=client, jti="second", expires_at=EXPIRES))
        session.flush()
        session.rollback()  # the unit of work fails after its savepoint was released
    assert _stored(engine, client) == []


def test_a_failed_savepoint_rolls_back_alone_and_the_unit_of_work_commits_the_rest(
    engine: Engine,
) -> None:
    client = f"sp-{uuid.uuid4().hex}"
    with Session(engine) as session:
        session.execute(select(UsedAssertion).limit(1)).all()
        with savepoint(session):
            session.add(UsedAssertion(client_id=client, jti="kept", expires_at=EXPIRES))
        with pytest.raises(IntegrityError), savepoint(session):
            session.add(UsedAssertion(client_id=client, jti="kept", expires_at=EXPIRES))
        with savepoint(session):
            session.add(UsedAssertion(client_id=client, jti="also-kept", expires_at=EXPIRES))
        session.commit()
    assert _stored(engine, client) == ["also-kept", "kept"]
