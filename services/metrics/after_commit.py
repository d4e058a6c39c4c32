"""Recording a metric when a unit of work commits, and never when it rolls back.

A request's work may run several times (``run_unit_of_work`` retries a unique-key race) and a
task's may fail before it commits: counting when the work runs would count what never happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_PENDING = "careloop_metrics_pending"


def after_commit(session: Session, record: Callable[[], object]) -> None:
    """Run ``record`` once ``session``'s transaction has committed (dropped on rollback)."""
    session.info.setdefault(_PENDING, []).append(record)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    pending: list[Callable[[], Any]] | None = session.info.pop(_PENDING, None)
    for record in pending or ():
        record()


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)
