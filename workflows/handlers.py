"""What each outbox event sets off: the one registry of reactions and their handlers.

An event (``services.outbox.events``) is reacted to by a task (``EVENT_TASKS``; the router in
``workflows.routing`` picks among a reading's two), and each task runs its handler
(``HANDLERS``). The Celery tasks (``workflows.tasks``) and the inline runner
(``workflows.inline``) both look the task up here, so they run the same code. A handler takes
the unit of work's session, the settings and the message's keyword arguments, does the work in
that session and says whether the message is done; the caller completes or postpones the
message in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from sqlalchemy import Engine
from sqlmodel import Session

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.integrations.ehr.smart import SmartError
from careloop.services.ehr.models import EhrConnection
from careloop.services.outbox.events import EventType
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.bulk_export import run_chunk
from careloop.workflows.delivery import deliver_notification
from careloop.workflows.ehr.circuit import CircuitOpen, connection_failed
from careloop.workflows.ehr.pull import pull
from careloop.workflows.ehr.push import push_to_ehr
from careloop.workflows.evaluation import evaluate_observation
from careloop.workflows.task_names import TaskName

MAX_RETRIES = 8
"""How often a task is retried after a transient failure (a database or broker error)."""

EHR_FAILURES = (CircuitOpen, EhrError, SmartError)
"""What an EHR handler raises when the EHR cannot take or give the work now (or ever)."""


@dataclass(frozen=True)
class Outcome:
    """What one run of a message's work came to."""

    value: object = None
    """What the Celery task returns."""
    done: bool = True
    """False: the work was recorded but is to be retried; the message stays open."""
    retry_in: float | None = None
    """With ``done`` False: seconds until the retry."""


Handle = Callable[..., Outcome]
"""``handle(session, settings, **message_kwargs)``."""


@dataclass(frozen=True)
class Handler:
    """One task's work and how its runners treat it."""

    handle: Handle
    already_done: object
    """What the Celery task returns for a redelivered message whose work is done."""
    crash_after: str | None = None
    """The ``crash_point`` passed once the work is committed (fault tests kill workers there)."""
    ehr: bool = False
    """It talks to an EHR (``connection_id``): failures retry against the connection's circuit."""
    max_retries: int | None = MAX_RETRIES
    drains: str | None = None
    """A payload key: one run also does the open messages with the same value there (an EHR
    push drains its connection's pending pushes), so a relay publishes one message per value
    of a batch and leases the others with it (``workflows.routing``)."""


def _evaluate(
    session: Session,
    settings: Settings,
    *,
    tenant_id: str,
    observation_id: str,
    urgent: bool | None = None,  # the routing decision, made already
) -> Outcome:
    alerts = evaluate_observation(session, settings, tenant_id, observation_id)
    return Outcome([a.id for a in alerts])


def _deliver(session: Session, settings: Settings, *, notification_id: str) -> Outcome:
    outcome = deliver_notification(session, settings, notification_id)
    # A failed attempt is recorded and committed; the message stays open for the retry.
    return Outcome(True, outcome.done, outcome.retry_in)


def _push(
    session: Session,
    settings: Settings,
    *,
    connection_id: str,
    patient_id: str,
    references: list[str],
) -> Outcome:
    return Outcome(push_to_ehr(session, settings, connection_id, patient_id, list(references)))


def _pull(session: Session, settings: Settings, *, connection_id: str) -> Outcome:
    connection = session.get(EhrConnection, connection_id)
    if connection is None or not connection.active:
        return Outcome({})
    result = pull(session, settings, connection)
    return Outcome({"imported": result.imported, "tasks": result.tasks_applied})


def _export(session: Session, settings: Settings, *, job_id: str) -> Outcome:
    # One chunk per run, committed with its cursor; the message stays open for the next one.
    done = run_chunk(session, settings, job_id)
    return Outcome(job_id, done=done, retry_in=None if done else 0)


_EVALUATE = Handler(_evaluate, already_done=[], crash_after="after-evaluate-commit")

HANDLERS: Mapping[str, Handler] = MappingProxyType(
    {
        TaskName.OBSERVATION_EVALUATE: _EVALUATE,
        TaskName.OBSERVATION_EVALUATE_URGENT: _EVALUATE,
        TaskName.NOTIFICATION_DELIVER: Handler(
            _deliver, already_done=True, crash_after="after-deliver-commit"
        ),
        TaskName.EHR_PUSH: Handler(
            _push, already_done="done", ehr=True, max_retries=None, drains="connection_id"
        ),
        TaskName.EHR_PULL: Handler(_pull, already_done={}, ehr=True, max_retries=20),
        TaskName.BULK_EXPORT: Handler(_export, already_done=None, crash_after="after-export-chunk"),
    }
)
"""Every outbox task, by name."""

EVENT_TASKS: Mapping[EventType, tuple[TaskName, ...]] = MappingProxyType(
    {
        # Routine; urgent when the reading is critical by itself (see workflows.routing).
        EventType.READING_CREATED: (
            TaskName.OBSERVATION_EVALUATE,
            TaskName.OBSERVATION_EVALUATE_URGENT,
        ),
        EventType.RESOURCES_CHANGED: (TaskName.EHR_PUSH,),
        EventType.NOTIFICATION_REQUESTED: (TaskName.NOTIFICATION_DELIVER,),
        EventType.EXPORT_REQUESTED: (TaskName.BULK_EXPORT,),
    }
)
"""The task that reacts to each event."""


def record_ehr_failure(
    engine: Engine, settings: Settings, exc: Exception, connection_id: str
) -> None:
    """Count a transient EHR failure against its connection's circuit; re-raise a lasting one.

    An open circuit is no new failure: the work waits for it to close.
    """
    if isinstance(exc, CircuitOpen):
        return
    if not getattr(exc, "transient", False):
        raise exc
    with session_scope(engine) as session:
        connection_failed(session, settings, connection_id, str(exc))
