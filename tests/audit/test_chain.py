"""The audit chain: entries linked by hash, no fork under concurrent appends, tampering found."""

from __future__ import annotations

import secrets
import threading

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from careloop.services.audit.chain import GENESIS, entry_hash, record_fields
from careloop.services.audit.checkpoints import Head, checkpoint_all, sign_checkpoint
from careloop.services.audit.models import AuditCheckpoint, AuditRecord
from careloop.services.audit.verify import verify_tenant
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows import runtime
from careloop.workflows.celery_app import celery_app, configure_celery
from careloop.workflows.task_names import TaskName
from careloop.workflows.tasks import audit_checkpoint


@pytest.fixture
def secret(settings: Settings) -> str:
    """The secret careloop's signing keys in the session database are encrypted with."""
    return settings.secret_key


def _tenant() -> str:
    return "t-audit-" + secrets.token_hex(6)


def _append(engine: Engine, tenant_id: str, n: int, start: int = 0) -> None:
    with session_scope(engine) as session:
        for i in range(start, start + n):
            session.add(
                AuditRecord(
                    tenant_id=tenant_id,
                    kind="access",
                    action="R",
                    agent="client:c1",
                    entity=f"Observation/o{i}",
                    outcome="success",
                )
            )


def _rows(engine: Engine, tenant_id: str) -> list[AuditRecord]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(AuditRecord)
                .where(AuditRecord.tenant_id == tenant_id)
                .order_by(col(AuditRecord.seq))
            ).all()
        )


def _problem(engine: Engine, tenant_id: str) -> tuple[int, str] | None:
    with Session(engine) as session:
        problem = verify_tenant(session, tenant_id).problem
    return None if problem is None else (problem.seq, problem.reason)


def test_entries_are_chained_in_order(engine: Engine) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 3)
    _append(engine, tenant_id, 2, start=3)
    rows = _rows(engine, tenant_id)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.prev_hash == before.hash
    for row in rows:
        assert row.hash == entry_hash(record_fields(row), row.prev_hash or "")
    assert _problem(engine, tenant_id) is None


def test_tenants_have_chains_of_their_own(engine: Engine) -> None:
    first, second = _tenant(), _tenant()
    _append(engine, first, 2)
    _append(engine, second, 1)
    assert [r.seq for r in _rows(engine, second)] == [1]
    assert _rows(engine, second)[0].prev_hash == GENESIS


def test_concurrent_appends_do_not_fork(engine: Engine) -> None:
    tenant_id = _tenant()
    threads, per_thread = 6, 8
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(per_thread):
                _append(engine, tenant_id, 1, start=k * 100 + i)
        except BaseException as exc:  # reported below, with the thread's failure
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not errors
    rows = _rows(engine, tenant_id)
    assert [r.seq for r in rows] == list(range(1, threads * per_thread + 1))
    assert _problem(engine, tenant_id) is None


def _sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text(statement), params)


def test_verify_finds_an_altered_entry(engine: Engine) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 5)
    _sql(
        engine,
        "UPDATE audit_record SET entity = 'Observation/other' WHERE tenant_id = :t AND seq = 3",
        t=tenant_id,
    )
    assert _problem(engine, tenant_id) == (3, "entry altered (hash mismatch)")


def test_verify_finds_a_removed_entry(engine: Engine) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 5)
    _sql(engine, "DELETE FROM audit_record WHERE tenant_id = :t AND seq = 2", t=tenant_id)
    assert _problem(engine, tenant_id) == (2, "entry removed (gap in seq)")


def test_verify_finds_a_removed_entry_renumbered(engine: Engine) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 5)
    _sql(engine, "DELETE FROM audit_record WHERE tenant_id = :t AND seq = 2", t=tenant_id)
    for seq in (3, 4, 5):
        _sql(
            engine,
            "UPDATE audit_record SET seq = :n WHERE tenant_id = :t AND seq = :s",
            t=tenant_id,
            s=seq,
            n=seq - 1,
        )
    assert _problem(engine, tenant_id) == (2, "link broken (entry removed or reordered)")


def test_verify_finds_reordered_entries(engine: Engine) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 5)
    _sql(engine, "UPDATE audit_record SET seq = 99 WHERE tenant_id = :t AND seq = 2", t=tenant_id)
    _sql(engine, "UPDATE audit_record SET seq = 2 WHERE tenant_id = :t AND seq = 4", t=tenant_id)
    _sql(engine, "UPDATE audit_record SET seq = 4 WHERE tenant_id = :t AND seq = 99", t=tenant_id)
    assert _problem(engine, tenant_id) == (2, "link broken (entry removed or reordered)")


def test_checkpoint_reveals_truncation(engine: Engine, secret: str) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 4)
    with session_scope(engine) as session:
        made = [c for c in checkpoint_all(session, secret) if c.tenant_id == tenant_id]
    assert [c.seq for c in made] == [4]
    assert _problem(engine, tenant_id) is None
    # Without the checkpoint, dropping the tail would leave a valid, shorter chain.
    _sql(engine, "DELETE FROM audit_record WHERE tenant_id = :t AND seq >= 3", t=tenant_id)
    assert _problem(engine, tenant_id) == (3, "log truncated (checkpoint at seq 4)")


def test_checkpoint_is_not_repeated_without_growth(engine: Engine, secret: str) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 2)
    with session_scope(engine) as session:
        checkpoint_all(session, secret)
    with session_scope(engine) as session:
        assert tenant_id not in {c.tenant_id for c in checkpoint_all(session, secret)}


@pytest.mark.parametrize("tamper", ["payload", "signature"])
def test_a_forged_checkpoint_is_refused(engine: Engine, secret: str, tamper: str) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 3)
    with session_scope(engine) as session:
        token = sign_checkpoint(
            session, secret, Head(tenant_id, 3, _rows(engine, tenant_id)[2].hash or "")
        ).jws
    header, payload, signature = token.split(".")
    if tamper == "payload":
        payload = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    else:
        signature = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    _sql(
        engine,
        "UPDATE audit_checkpoint SET jws = :j WHERE tenant_id = :t",
        j=f"{header}.{payload}.{signature}",
        t=tenant_id,
    )
    assert _problem(engine, tenant_id) == (4, "checkpoint with an invalid signature")


def test_a_checkpoint_pins_the_entry_it_names(engine: Engine, secret: str) -> None:
    tenant_id = _tenant()
    _append(engine, tenant_id, 3)
    with session_scope(engine) as session:
        checkpoint_all(session, secret)
    # Rewrite the whole chain from seq 2 (consistent hashes, as an attacker with the database
    # could): the signed hash at seq 3 no longer matches.
    _sql(engine, "DELETE FROM audit_record WHERE tenant_id = :t AND seq >= 2", t=tenant_id)
    _append(engine, tenant_id, 2, start=50)
    assert _problem(engine, tenant_id) == (3, "entry differs from its signed checkpoint")
    with Session(engine) as session:
        stored = session.exec(
            select(AuditCheckpoint).where(AuditCheckpoint.tenant_id == tenant_id)
        ).one()
    assert stored.seq == 3


def test_beat_checkpoints_every_chain_that_grew(settings: Settings, engine: Engine) -> None:
    configure_celery(settings)
    try:
        schedule = celery_app.conf.beat_schedule
        assert any(e["task"] == TaskName.AUDIT_CHECKPOINT.value for e in schedule.values())
    finally:
        celery_app.close()
    runtime.configure(settings, engine)
    tenant = _tenant()
    _append(engine, tenant, 3)
    audit_checkpoint()
    with Session(engine) as session:
        signed = session.exec(
            select(AuditCheckpoint.seq).where(AuditCheckpoint.tenant_id == tenant)
        ).all()
    assert signed == [3]
    audit_checkpoint()  # the chain did not grow: no second checkpoint
    _append(engine, tenant, 1, start=3)
    audit_checkpoint()
    with Session(engine) as session:
        seqs = sorted(
            session.exec(
                select(AuditCheckpoint.seq).where(AuditCheckpoint.tenant_id == tenant)
            ).all()
        )
    assert seqs == [3, 4]
    assert _problem(engine, tenant) is None
