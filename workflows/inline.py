"""Running outbox work in this process, without a broker (``careloop demo``, tests).

The same handlers the Celery tasks run (``workflows.handlers``), and the same outbox
bookkeeping: each message is claimed with a lease and completed in the transaction of its work,
so behaviour matches.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.handlers import EHR_FAILURES, HANDLERS, record_ehr_failure
from careloop.workflows.outbox import (
    Leases,
    Router,
    complete,
    message_id,
    postpone,
    relay,
    start,
)
from careloop.workflows.routing import router_for

TAKE = 10_000


def _take_due(
    engine: Engine, leases: Leases, route: Router
) -> list[tuple[int, str, dict[str, Any]]]:
    """Claim the due outbox messages, as the relay does, but to run here instead of publishing."""
    taken: list[tuple[int, str, dict[str, Any]]] = []

    def collect(task: str, kwargs: dict[str, Any], task_id: str) -> None:
        message = message_id(task_id)
        assert message is not None
        taken.append((message, task, kwargs))

    relay(engine, collect, limit=TAKE, leases=leases, route=route)
    return taken


def run_pending(engine: Engine, settings: Settings, rounds: int = 10) -> int:
    """Run due outbox work (and the work it creates) until none is left; the number of tasks run.

    A delivery that fails retryably stays open until its backoff (and lease) ends, as a Celery
    retry would; it is not retried in this call. An EHR push or pull that fails transiently is
    due again at once, for the next call.
    """
    leases = Leases.from_settings(settings)
    route = router_for(settings)
    done = 0
    retry: list[int] = []
    for _ in range(rounds):
        pending = _take_due(engine, leases, route)
        if not pending:
            break
        for message, task, kwargs in pending:
            handler = HANDLERS.get(task)  # None: beat's work (a replayed dead letter), not run here
            try:
                with session_scope(engine) as session:
                    if start(session, message):
                        outcome = handler.handle(session, settings, **kwargs) if handler else None
                        if outcome is None or outcome.done:
                            complete(session, message)
                        else:
                            # retry_in 0: more of the work is due now (an export's next
                            # chunk), so the next round takes it; a backoff waits out its lease.
                            retry_in = outcome.retry_in or 0.0
                            wait = retry_in + leases.seconds(task) if retry_in else 0.0
                            postpone(session, message, wait)
            except EHR_FAILURES as exc:
                if handler is None or not handler.ehr:
                    raise
                record_ehr_failure(engine, settings, exc, kwargs["connection_id"])
                retry.append(message)
            done += 1
    if retry:
        with session_scope(engine) as session:
            for message in retry:
                postpone(session, message, 0)
    return done
