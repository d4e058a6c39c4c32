"""Running outbox work in this process, without a broker (``careloop demo``, tests).

The same service functions the Celery tasks call, in the same order, so behaviour matches.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.integrations.ehr.smart import SmartError
from careloop.services.db import session_scope, utcnow
from careloop.services.ehr.models import EhrConnection
from careloop.services.settings import Settings
from careloop.workflows.delivery import deliver_notification
from careloop.workflows.ehr_pull import pull
from careloop.workflows.ehr_sync import CircuitOpen, connection_failed, push_to_ehr
from careloop.workflows.evaluation import evaluate_observation
from careloop.workflows.models import OutboxMessage
from careloop.workflows.outbox import enqueue

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
    if task in ("observation.evaluate", "observation.evaluate_urgent"):
        evaluate_observation(session, settings, kwargs["tenant_id"], kwargs["observation_id"])
    elif task == "notification.deliver":
        deliver_notification(session, settings, kwargs["notification_id"])
    elif task == "ehr.pull":
        connection = session.get(EhrConnection, kwargs["connection_id"])
        if connection is not None and connection.active:
            pull(session, settings, connection)
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

    A delivery that fails retryably stays pending, not retried here. An EHR push or pull that
    fails transiently goes back into the outbox, as Celery would retry it; the next call runs it.
    """
    done = 0
    retry: list[tuple[str, dict[str, Any]]] = []
    for _ in range(rounds):
        pending = _take_pending(engine)
        if not pending:
            break
        for task, kwargs in pending:
            try:
                with session_scope(engine) as session:
                    _run(session, settings, task, kwargs)
            except (EhrError, SmartError, CircuitOpen) as exc:
                if not getattr(exc, "transient", True):
                    raise
                if "connection_id" in kwargs and not isinstance(exc, CircuitOpen):
                    with session_scope(engine) as session:
                        connection_failed(session, settings, kwargs["connection_id"], str(exc))
                retry.append((task, kwargs))
            done += 1
    if retry:
        with session_scope(engine) as session:
            for task, kwargs in retry:
                enqueue(session, "", task, kwargs)
    return done
