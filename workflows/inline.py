"""Running outbox work in this process, without a broker (``careloop demo``, tests).

The same service functions the Celery tasks call, in the same order, and the same outbox
bookkeeping: each message is claimed with a lease and completed in the transaction of its work,
so behaviour matches.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.integrations.ehr.smart import SmartError
from careloop.services.db import session_scope
from careloop.services.ehr.models import EhrConnection
from careloop.services.settings import Settings
from careloop.workflows.delivery import deliver_notification
from careloop.workflows.ehr.circuit import CircuitOpen, connection_failed
from careloop.workflows.ehr.pull import pull
from careloop.workflows.ehr.push import push_to_ehr
from careloop.workflows.evaluation import evaluate_observation
from careloop.workflows.outbox import Leases, complete, message_id, postpone, relay, start

TAKE = 10_000


def _take_due(engine: Engine, leases: Leases) -> list[tuple[int, str, dict[str, Any]]]:
    """Claim the due outbox messages, as the relay does, but to run here instead of publishing."""
    taken: list[tuple[int, str, dict[str, Any]]] = []

    def collect(task: str, kwargs: dict[str, Any], task_id: str) -> None:
        message = message_id(task_id)
        assert message is not None
        taken.append((message, task, kwargs))

    relay(engine, collect, limit=TAKE, leases=leases)
    return taken


def _run(session: Session, settings: Settings, task: str, kwargs: dict[str, Any]) -> float | None:
    """Run one message's work; None when it is done, else seconds until it should be retried."""
    if task in ("observation.evaluate", "observation.evaluate_urgent"):
        evaluate_observation(session, settings, kwargs["tenant_id"], kwargs["observation_id"])
    elif task == "notification.deliver":
        outcome = deliver_notification(session, settings, kwargs["notification_id"])
        if not outcome.done:
            return outcome.retry_in or 0.0
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
    return None


def run_pending(engine: Engine, settings: Settings, rounds: int = 10) -> int:
    """Run due outbox work (and the work it creates) until none is left; the number of tasks run.

    A delivery that fails retryably stays open until its backoff (and lease) ends, as a Celery
    retry would; it is not retried in this call. An EHR push or pull that fails transiently is
    due again at once, for the next call.
    """
    leases = Leases.from_settings(settings)
    done = 0
    retry: list[int] = []
    for _ in range(rounds):
        pending = _take_due(engine, leases)
        if not pending:
            break
        for message, task, kwargs in pending:
            try:
                with session_scope(engine) as session:
                    if start(session, message):
                        retry_in = _run(session, settings, task, kwargs)
                        if retry_in is None:
                            complete(session, message)
                        else:
                            postpone(session, message, retry_in + leases.seconds(task))
            except (EhrError, SmartError, CircuitOpen) as exc:
                if not getattr(exc, "transient", True):
                    raise
                if "connection_id" in kwargs and not isinstance(exc, CircuitOpen):
                    with session_scope(engine) as session:
                        connection_failed(session, settings, kwargs["connection_id"], str(exc))
                retry.append(message)
            done += 1
    if retry:
        with session_scope(engine) as session:
            for message in retry:
                postpone(session, message, 0)
    return done
