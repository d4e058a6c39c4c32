"""Known patient ids: remembered only from committed transactions, and then no lookup is made."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from careloop.services.patients.known_ids import KnownIds, known_ids
from careloop.services.patients.service import create_patients, find_patients
from careloop.services.store.repository import ResourceStore
from careloop.services.unit_of_work import session_scope

SYSTEM = "https://app.example/patients"


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def note(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


def _tenant() -> str:
    return f"t-{secrets.token_hex(4)}"


def test_a_committed_patient_is_found_without_a_query(engine: Engine) -> None:
    tenant, ident, pid = _tenant(), (SYSTEM, "p-1"), str(uuid.uuid4())
    with session_scope(engine) as session:
        create_patients(session, ResourceStore(session, tenant), {ident: pid})
    with _statements(engine) as statements, Session(engine) as session:
        assert find_patients(session, tenant, [ident]) == {ident: pid}
        assert not [s for s in statements if "patient_identifier" in s]
        assert find_patients(session, tenant, [(SYSTEM, "unknown")]) == {}
    assert [s for s in statements if "patient_identifier" in s]  # an unknown one is looked up


def test_a_rolled_back_patient_is_not_remembered(engine: Engine) -> None:
    tenant, ident = _tenant(), (SYSTEM, "p-2")
    with Session(engine) as session:
        create_patients(session, ResourceStore(session, tenant), {ident: str(uuid.uuid4())})
        assert find_patients(session, tenant, [ident])  # seen inside the transaction
        session.rollback()
    with Session(engine) as session:
        assert find_patients(session, tenant, [ident]) == {}


def test_a_patient_created_in_a_rolled_back_savepoint_is_not_remembered(engine: Engine) -> None:
    tenant, ident = _tenant(), (SYSTEM, "p-3")
    with session_scope(engine) as session:
        with pytest.raises(RuntimeError), session.begin_nested():
            create_patients(session, ResourceStore(session, tenant), {ident: str(uuid.uuid4())})
            raise RuntimeError("entry failed")
    with Session(engine) as session:
        assert find_patients(session, tenant, [ident]) == {}


def test_a_looked_up_patient_is_remembered_per_tenant(engine: Engine) -> None:
    tenant, other, ident, pid = _tenant(), _tenant(), (SYSTEM, "p-4"), str(uuid.uuid4())
    with session_scope(engine) as session:
        create_patients(session, ResourceStore(session, tenant), {ident: pid})
    with Session(engine) as session:
        memory = known_ids(session)
        assert memory is not None
        assert memory.get_many([(other, *ident)]) == {}
        assert find_patients(session, other, [ident]) == {}


def test_the_memory_is_bounded() -> None:
    memory = KnownIds(limit=3)
    memory.put_many({("t", "s", str(n)): str(n) for n in range(5)})
    assert memory.get_many([("t", "s", str(n)) for n in range(5)]) == {
        ("t", "s", "2"): "2",
        ("t", "s", "3"): "3",
        ("t", "s", "4"): "4",
    }
