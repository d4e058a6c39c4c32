"""The unit of work: one transaction, committed in one place, its outbox handed on.

Every write in careloop commits through ``commit`` (a request's session, or ``session_scope``
elsewhere). After the commit the ids of the outbox messages the transaction recorded go to the
session's hand-off (the relay that publishes them), so a reaction starts without waiting for
beat's relay; without a hand-off they wait for it, and nothing is lost either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlmodel import Session

from careloop.services.outbox.events import ReadingTriage
from careloop.services.outbox.record import TRIAGE_KEY, forget_pending, pending_ids

OutboxHandoff = Callable[[list[int]], None]
"""Takes the ids of the outbox messages a transaction committed (to publish them)."""

_HANDOFF = "careloop_outbox_handoff"


def hand_off_to(
    session: Session, handoff: OutboxHandoff | None, triage: ReadingTriage | None = None
) -> None:
    """Give what ``session`` commits to the outbox to ``handoff`` (None: beat's relay takes it).

    With ``triage`` the readings it records are triaged at once (otherwise when relayed).
    """
    session.info[_HANDOFF] = handoff
    session.info[TRIAGE_KEY] = triage


def commit(session: Session) -> None:
    """Commit ``session``'s transaction, then hand its outbox messages on."""
    session.commit()
    ids = pending_ids(session)
    handoff: OutboxHandoff | None = session.info.get(_HANDOFF)
    if handoff is not None and ids:
        handoff(ids)


def rollback(session: Session) -> None:
    """Roll ``session``'s transaction back, with the outbox messages it recorded."""
    session.rollback()
    forget_pending(session)


@contextmanager
def session_scope(
    engine: Engine, handoff: OutboxHandoff | None = None, triage: ReadingTriage | None = None
) -> Iterator[Session]:
    """A unit of work outside a request: commits on success, rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        hand_off_to(session, handoff, triage)
        try:
            yield session
            commit(session)
        except BaseException:
            rollback(session)
            raise


def begin_writing(session: Session) -> None:
    """Take SQLite's write lock now, if ``session``'s transaction does not hold it yet.

    pysqlite opens a transaction only before a write, so what a unit of work reads first is not
    inside it. ``BEGIN IMMEDIATE`` (waited for under the busy timeout) puts the rest of the unit
    of work inside one transaction that writes in turn with every other. A no-op on PostgreSQL.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not getattr(dbapi, "in_transaction", True):
            connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A savepoint inside ``session``'s transaction: its work rolls back alone on error.

    On SQLite a SAVEPOINT after reads alone would start a transaction of its own, and releasing
    it would commit: the unit of work's rollback (a failed request, a lost race) would leave the
    savepoint's rows written. `begin_writing` first keeps it inside.
    """
    begin_writing(session)
    with session.begin_nested():
        yield
