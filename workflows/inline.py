"""Running outbox work in this process, without a broker (``careloop demo``, tests).

The same service functions the Celery tasks call, in the same order, so behaviour matches.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from careloop.services.db import session_scope, utcnow
from careloop.services.settings import Settings
from careloop.workflows.delivery import deliver_notification
from careloop.workflows.ehr_sync import push_to_ehr
from careloop.workflows.evaluation import evaluate_observation
from careloop.workflows.models import OutboxMessage

_O = OutboxMessage.__table__  # type: ignore[attr-defined]


def _take_pending(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.begin() as conn:
        rows = conn.execute(
            select(_O.c.id, _O.c.task, _O.c.payload)
            .where(_O.c.dispatched_at.is_(None))
            .order_by(_O.c.id)
        ).all()
        if rows:
            conn.execute(
                update(_O).where(_O.c.id.in_([r.id for r in rows])).values(dispatched_at=utcnow())
            )
    return [(r.task, orjson.loads(r.payload)) for r in rows]


def _run(session: Session, settings: Settings, task: str, kwargs: dict[str, Any]) -> None:
    if task == "observation.evaluate":
        evaluate_observation(session, settings, kwargs["tenant_id"], kwargs["observation_id"])
    elif task == "notification.deliver":
        deliver_notification(session, settings, kwargs["notification_id"])
    elif task == "ehr.push":
        push_to_ehr(
            session,
            settings,
            kwargs["connection_id"],
            kwargs["patient_id"],
            list(kwargs["references"]),
        )


def run_pending(engine: Engine, settings: Settings, rounds: int = 10) -> int:
    """Run outbox work (and the work it creates) until none is left; the number of tasks run.

    A delivery that fails retryably stays pending; it is not retried here.
    """
    done = 0
    for _ in range(rounds):
        pending = _take_pending(engine)
        if not pending:
            break
        for task, kwargs in pending:
            with session_scope(engine) as session:
                _run(session, settings, task, kwargs)
            done += 1
    return done
