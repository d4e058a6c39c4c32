"""Outbox leases: the database decides when work is done, on SQLite and PostgreSQL.

A published message that is not completed within its lease is published again; one whose lease
has not run out is not; a completed one never is. Concurrent relays publish each message once,
and on PostgreSQL a relay skips the messages another relay, or a running task, holds.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, text, update
from sqlmodel import Session, select
from support.clients import Caller
from support.databases import create_pg_database, drop_pg_database, fresh_pg_database
from support.outbox import tenant_messages
from support.reports import phq9
from webhook_receiver import Receiver

from careloop.services.db import make_engine, utcnow
from careloop.services.migrate import alembic_config, upgrade
from careloop.services.outbox.models import DeadTask, OutboxMessage
from careloop.services.outbox.record import record_message
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows import runtime
from careloop.workflows.inline import run_pending
from careloop.workflows.outbox import (
    Leases,
    complete,
    message_id,
    postpone,
    prune,
    relay,
    start,
    task_id,
)
from careloop.workflows.tasks import deliver, evaluate

ROUTINE = "observation.evaluate"
URGENT = "notification.deliver"
TENANT = "lease-test"


@pytest.fixture(autouse=True)
def _no_open_test_messages(request: pytest.FixtureRequest) -> Iterator[None]:
    """Leave no open message of ours behind for other tests' runners (the database is shared)."""
    yield
    if "engine" not in request.fixturenames:
        return
    with session_scope(request.getfixturevalue("engine")) as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.tenant_id == TENANT)  # type: ignore[arg-type]
            .where(OutboxMessage.completed_at.is_(None))  # type: ignore[union-attr]
            .values(completed_at=utcnow(), outcome="done")
        )


class Sent:
    """A publisher that records what it was asked to send (and can fail or block)."""

    def __init__(self, fail_at: int | None = None, gate: threading.Event | None = None) -> None:
        self.task_ids: list[str] = []
        self.fail_at = fail_at
        self.gate = gate
        self.lock = threading.Lock()

    def __call__(self, task: str, kwargs: dict[str, Any], tid: str) -> None:
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        with self.lock:
            if self.fail_at is not None and len(self.task_ids) == self.fail_at:
                raise ConnectionError("broker down")
            self.task_ids.append(tid)

    def ids(self) -> list[int]:
        """The outbox ids sent, in order."""
        return [m for m in (message_id(t) for t in self.task_ids) if m is not None]


def _enqueue(engine: Engine, count: int = 1, task: str = ROUTINE) -> list[int]:
    committed: list[int] = []
    with session_scope(engine, committed.extend) as session:
        for n in range(count):
            record_message(session, TENANT, task, {"n": n})
    return committed


def _row(engine: Engine, message: int) -> OutboxMessage:
    with Session(engine) as session:
        row = session.get(OutboxMessage, message)
        assert row is not None
        return row


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_leases_are_short_for_alert_work_and_grow_with_each_publication() -> None:
    leases = Leases(urgent_seconds=10, routine_seconds=120, max_doublings=3)
    assert [leases.seconds(URGENT, n) for n in range(1, 7)] == [10, 20, 40, 80, 80, 80]
    assert leases.seconds("observation.evaluate_urgent") == 10
    assert leases.seconds("alerts.escalate_due") == 10
    assert [leases.seconds(ROUTINE, n) for n in (1, 2, 5)] == [120, 240, 960]
    assert leases.seconds("ehr.push") == 120
    settings = Settings(outbox_lease_urgent_seconds=3, outbox_lease_routine_seconds=30)
    assert Leases.from_settings(settings).seconds(URGENT, 2) == 6


def test_a_new_message_is_published_once_and_not_again_within_its_lease(engine: Engine) -> None:
    [message] = _enqueue(engine)
    sent = Sent()
    before = utcnow()
    assert relay(engine, sent, [message]) == 1
    assert sent.task_ids == [f"outbox-{message}"]
    row = _row(engine, message)
    assert row.attempts == 1 and row.completed_at is None
    assert row.dispatched_at is not None and row.dispatched_at >= before
    lease = (row.available_at - row.dispatched_at).total_seconds()
    assert lease == pytest.approx(120, abs=0.01)  # routine work
    assert relay(engine, sent, [message]) == 0
    assert len(sent.task_ids) == 1


def test_a_message_whose_lease_ran_out_is_published_again(engine: Engine) -> None:
    [message] = _enqueue(engine, task=URGENT)
    leases = Leases(urgent_seconds=0.3, routine_seconds=60)
    sent = Sent()
    first = time.monotonic()  # the lease starts inside the call: no later than this
    assert relay(engine, sent, [message], leases=leases) == 1
    assert relay(engine, sent, [message], leases=leases) == 0  # still leased
    _until(lambda: relay(engine, sent, [message], leases=leases) == 1)
    assert time.monotonic() - first >= 0.3
    assert sent.ids() == [message, message]
    row = _row(engine, message)
    assert row.attempts == 2
    assert row.dispatched_at is not None
    assert (row.available_at - row.dispatched_at).total_seconds() == pytest.approx(0.6, abs=0.01)


def test_a_completed_message_is_never_published_again(engine: Engine) -> None:
    [message] = _enqueue(engine, task=URGENT)
    leases = Leases(urgent_seconds=0.05)
    sent = Sent()
    assert relay(engine, sent, [message], leases=leases) == 1
    with session_scope(engine) as session:
        assert start(session, message)
        complete(session, message)
    row = _row(engine, message)
    assert row.outcome == "done" and row.completed_at is not None
    _until(lambda: utcnow() > row.available_at)
    assert relay(engine, sent, [message], leases=leases) == 0
    assert relay(engine, sent, leases=leases) >= 0  # a sweep of everything due
    assert sent.ids().count(message) == 1
    with session_scope(engine) as session:  # a second delivery finds nothing to do
        assert not start(session, message)


def test_a_postponed_message_waits_for_its_retry(engine: Engine) -> None:
    [message] = _enqueue(engine, task=URGENT)
    sent = Sent()
    assert relay(engine, sent, [message], leases=Leases(urgent_seconds=0.01)) == 1
    with session_scope(engine) as session:
        postpone(session, message, 60)
    assert (_row(engine, message).available_at - utcnow()).total_seconds() > 59
    assert relay(engine, sent, [message]) == 0


def test_a_broker_failure_leaves_the_unsent_messages_due(engine: Engine) -> None:
    messages = _enqueue(engine, 5)
    failing = Sent(fail_at=2)
    assert relay(engine, failing, messages) == 2
    assert failing.ids() == messages[:2]
    assert [_row(engine, m).attempts for m in messages] == [1, 1, 0, 0, 0]
    sent = Sent()
    assert relay(engine, sent, messages) == 3
    assert sent.ids() == messages[2:]


def test_concurrent_relays_publish_each_message_once(engine: Engine) -> None:
    messages = _enqueue(engine, 300)
    sent = Sent()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def sweep() -> None:  # as beat's relay does, in batches of 25
        try:
            barrier.wait()
            while relay(engine, sent, limit=25):
                pass
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    ours = set(messages)
    assert sorted(m for m in sent.ids() if m in ours) == messages  # every one, none twice


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    """A PostgreSQL database of this module's own, for row-lock behaviour."""
    with fresh_pg_database("lease") as url:
        eng = make_engine(url, pool_size=5)
        upgrade(eng)
        yield eng
        eng.dispose()


def test_on_postgresql_a_relay_skips_what_another_relay_holds(pg_engine: Engine) -> None:
    messages = _enqueue(pg_engine, 20)
    gate = threading.Event()
    held = Sent(gate=gate)
    holder = threading.Thread(target=relay, args=(pg_engine, held, messages[:10]))
    holder.start()
    # The holder has claimed (locked) its ten rows and waits in publish; another relay of all
    # twenty skips them without waiting and publishes the other ten.
    _until(lambda: _locked(pg_engine, messages) == 10)
    other = Sent()
    started = time.monotonic()
    assert relay(pg_engine, other, messages) == 10
    assert time.monotonic() - started < 5
    assert other.ids() == messages[10:]
    gate.set()
    holder.join(30)
    assert held.ids() == messages[:10]
    assert relay(pg_engine, Sent(), messages) == 0


def test_on_postgresql_a_relay_claims_at_most_its_limit(pg_engine: Engine) -> None:
    """The oldest ``limit`` due messages, no more: a claim that takes more leaves them leased
    without publishing (their lease still runs) or publishes a larger batch than asked."""
    with pg_engine.begin() as conn:  # this module's own database: nothing else is due in it
        conn.execute(update(OutboxMessage).values(completed_at=utcnow(), outcome="done"))
    messages = _enqueue(pg_engine, 30)
    sent = Sent()
    assert relay(pg_engine, sent, limit=7) == 7
    assert sent.ids() == messages[:7]
    with Session(pg_engine) as session:
        claimed = session.exec(
            select(OutboxMessage).where(
                OutboxMessage.id.in_(messages),  # type: ignore[union-attr]
                OutboxMessage.attempts > 0,  # type: ignore[arg-type]
            )
        ).all()
    assert sorted(m.id for m in claimed) == messages[:7]


def _locked(engine: Engine, messages: list[int]) -> int:
    """How many of ``messages`` other transactions hold locked right now."""
    with engine.connect() as conn:
        free = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT id FROM outbox_message WHERE id = ANY(:ids) "
                "FOR UPDATE SKIP LOCKED) AS free"
            ),
            {"ids": messages},
        ).scalar_one()
        conn.rollback()
    return len(messages) - int(free)


def test_on_postgresql_a_running_task_keeps_the_relay_off_its_message(
    pg_engine: Engine,
) -> None:
    [message] = _enqueue(pg_engine, task=URGENT)
    leases = Leases(urgent_seconds=0.05)
    sent = Sent()
    assert relay(pg_engine, sent, [message], leases=leases) == 1
    with session_scope(pg_engine) as session:
        assert start(session, message)  # the task runs, holding its message
        _until(lambda: utcnow() > _row(pg_engine, message).available_at)  # past its lease
        assert relay(pg_engine, sent, [message], leases=leases) == 0
        # a second delivery of the same message waits for the first, then finds it done
        second: list[bool] = []
        waiter = threading.Thread(target=lambda: second.append(_start_and_end(pg_engine, message)))
        waiter.start()
        _until(lambda: _locked(pg_engine, [message]) == 1)
        assert second == []
        complete(session, message)
    waiter.join(30)
    assert second == [False]
    assert relay(pg_engine, sent, [message], leases=leases) == 0
    assert sent.ids() == [message]


def _start_and_end(engine: Engine, message: int) -> bool:
    with session_scope(engine) as session:
        return start(session, message)


def test_prune_deletes_only_messages_completed_long_ago(engine: Engine) -> None:
    old, recent, open_old = _enqueue(engine, 3)
    with session_scope(engine) as session:
        complete(session, old)
        complete(session, recent)
        long_ago = utcnow() - timedelta(days=8)
        session.execute(
            update(OutboxMessage).where(OutboxMessage.id == old).values(completed_at=long_ago)  # type: ignore[arg-type]
        )
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == open_old)  # type: ignore[arg-type]
            .values(created_at=long_ago)
        )
    assert prune(engine, timedelta(days=7), batch=1) >= 1
    with Session(engine) as session:
        assert session.get(OutboxMessage, old) is None
        assert session.get(OutboxMessage, recent) is not None
        assert session.get(OutboxMessage, open_old) is not None


@pytest.fixture
def task_runtime(settings: Settings, engine: Engine) -> None:
    """The Celery tasks run against the test database."""
    runtime.configure(settings, engine)


@pytest.mark.usefixtures("task_runtime")
def test_a_task_completes_its_message_and_a_second_delivery_does_nothing(
    engine: Engine,
) -> None:
    [message] = _enqueue(engine)
    kwargs = {"tenant_id": TENANT, "observation_id": "no-such-observation"}
    assert evaluate.apply(kwargs=kwargs, task_id=task_id(message)).get() == []
    row = _row(engine, message)
    assert row.outcome == "done" and row.completed_at is not None
    evaluate.apply(kwargs=kwargs, task_id=task_id(message)).get()
    assert _row(engine, message).completed_at == row.completed_at


@pytest.mark.usefixtures("task_runtime")
def test_a_task_failing_for_good_completes_its_message_as_dead(engine: Engine) -> None:
    [message] = _enqueue(engine)
    result = evaluate.apply(kwargs={"unexpected": 1}, task_id=task_id(message))
    assert result.failed()
    assert _row(engine, message).outcome == "dead"
    with Session(engine) as session:
        dead = session.exec(select(DeadTask).where(DeadTask.payload == '{"unexpected":1}')).all()
    assert len(dead) >= 1


@pytest.mark.usefixtures("task_runtime")
def test_a_retry_postpones_the_message_past_its_countdown(engine: Engine) -> None:
    [message] = _enqueue(engine, task=URGENT)
    before = utcnow()
    deliver.push_request(
        id=task_id(message),
        is_eager=True,
        called_directly=False,
        retries=0,
        args=[],
        kwargs={"notification_id": "no-such-notification"},
    )
    try:
        deliver.retry(countdown=60, throw=False)
    finally:
        deliver.pop_request()
    row = _row(engine, message)
    assert (row.available_at - before).total_seconds() >= 70  # countdown + the urgent lease
    assert row.completed_at is None  # open until the retry completes it


def test_migration_completes_dispatched_messages_and_keeps_the_rest_due(
    tmp_path: Path, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        url, name = f"sqlite:///{tmp_path / 'upgrade.db'}", None
    else:
        name = f"careloop_upgrade_{secrets.token_hex(4)}"
        url = create_pg_database(name)
    eng = make_engine(url, pool_size=2)
    try:
        config = alembic_config()
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
            conn.execute(
                text(
                    "INSERT INTO outbox_message (tenant_id, task, payload, created_at, "
                    "dispatched_at) VALUES ('t', 'observation.evaluate', '{}', :c, :d), "
                    "('t', 'observation.evaluate', '{}', :c, NULL)"
                ),
                {"c": "2026-11-01 10:00:00", "d": "2026-11-01 10:00:01"},
            )
        upgrade(eng)
        with Session(eng) as session:
            sent, unsent = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()  # type: ignore[arg-type]
        assert sent.outcome == "legacy" and sent.completed_at == sent.dispatched_at
        assert unsent.completed_at is None and unsent.attempts == 0
        assert unsent.available_at == unsent.created_at
        published = Sent()
        assert relay(eng, published) == 1
        assert published.ids() == [unsent.id]
    finally:
        eng.dispose()
        if name:
            drop_pg_database(name)


def test_the_inline_runner_completes_each_message_with_its_work(
    caller: Caller, engine: Engine, settings: Settings, oncall: Receiver
) -> None:
    receiver = oncall
    receiver.status = 503  # the first delivery fails, retryably
    response = caller.post("/v1/symptom-reports", json=phq9("inline-1", [0] * 8 + [1]))
    assert response.status_code == 201
    run_pending(engine, settings)
    evaluated, delivery = tenant_messages(engine, caller.tenant)
    assert evaluated.task == "reading.created" and evaluated.outcome == "done"
    # The failed delivery stays open until its backoff and lease have passed.
    assert delivery.task == "notification.requested" and delivery.completed_at is None
    assert (delivery.available_at - utcnow()).total_seconds() > 9
    run_pending(engine, settings)  # not due yet: not retried
    assert tenant_messages(engine, caller.tenant)[1].attempts == delivery.attempts == 1
    assert receiver.deliveries == []
    receiver.status = 200
    with session_scope(engine) as session:  # as if the backoff had passed
        postpone(session, delivery.id, 0)
    run_pending(engine, settings)
    assert len(receiver.wait_for(1)) == 1
    assert [m.outcome for m in tenant_messages(engine, caller.tenant)] == ["done", "done"]
