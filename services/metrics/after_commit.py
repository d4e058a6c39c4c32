"""Recording a metric when a unit of work commits, and never when it rolls back.

A request's work may run several times (``run_unit_of_work`` retries a unique-key race), a
task's may fail before it commits, and a batch entry's savepoint may roll back alone: counting
when the work runs would count what never happened.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_PENDING = "careloop_metrics_pending"
_Pending = list[tuple[SessionTransaction | None, Callable[[], object]]]


def after_commit(session: Session, record: Callable[[], object]) -> None:
    """Run ``record`` once ``session``'s transaction has committed (dropped on rollback)."""
    pending: _Pending = session.info.setdefault(_PENDING, [])
    pending.append((session.get_nested_transaction(), record))


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint released: its work commits with its transaction, or not at all
    pending: _Pending | None = session.info.pop(_PENDING, None)
    for _savepoint, record in pending or ():
        record()


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous: SessionTransaction) -> None:
    pending: _Pending | None = session.info.get(_PENDING)
    if not pending:
        return
    if not previous.nested:
        session.info.pop(_PENDING, None)
        return
    session.info[_PENDING] = [
        (savepoint, record) for savepoint, record in pending if not _within(savepoint, previous)
    ]


def _within(savepoint: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    while savepoint is not None:
        if savepoint is rolled_back:
            return True
        savepoint = savepoint.parent
    return False
