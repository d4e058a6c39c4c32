"""Taking a connection's other pending pushes into one batch, so one Bundle carries several.

The pending pushes are the connection's open ``resources.changed`` outbox messages. A push task
claims some by completing them in its own transaction: on PostgreSQL with ``FOR UPDATE SKIP
LOCKED``, so two workers never take the same message and a message whose own task is running
(its row locked by that task) is left to it; on SQLite the UPDATE takes the single write lock.
A rollback (a transient EHR failure) reopens every claimed message, and a claimed message's own
task, delivered later, finds it completed and does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import select, update
from sqlmodel import Session, col

from careloop.services.db import utcnow
from careloop.services.ehr.models import PatientLink
from careloop.services.outbox.events import EventType
from careloop.services.outbox.models import OutboxMessage

_O = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Pending:
    """One push's work: resources (``Type/id``) of one patient."""

    patient_id: str
    references: tuple[str, ...]
    message_id: int | None = None
    """The outbox message it was claimed from; None for the running task's own."""


def _payload_prefix(connection_id: str) -> str:
    # ``payload_of(ResourcesChanged)`` puts connection_id first; orjson writes it this way.
    return orjson.dumps({"connection_id": connection_id}).decode()[:-1] + ","


def claim_pending(
    session: Session, connection_id: str, own: Pending | None, limit: int, peek: bool = False
) -> list[Pending]:
    """Complete up to ``limit`` other open pushes to ``connection_id`` in this transaction.

    The oldest first. The running task's own message (the first one with the payload of
    ``own``, its work) is not returned. With ``peek`` only their ids are read (and locked on
    PostgreSQL), nothing is completed.
    """
    if limit <= 0:
        return []
    is_pg = session.get_bind().dialect.name == "postgresql"
    open_pushes = (
        select(_O.c.id)
        .where(
            _O.c.completed_at.is_(None),
            _O.c.task == EventType.RESOURCES_CHANGED.value,
            _O.c.payload.startswith(_payload_prefix(connection_id), autoescape=True),
        )
        .order_by(_O.c.id)
        .limit(limit + 1)
    )
    if is_pg:
        open_pushes = open_pushes.with_for_update(skip_locked=True)
    # Two statements: inside ``IN (...)`` PostgreSQL may run a locking subquery once per row,
    # each run skipping the rows the UPDATE just changed, so LIMIT would not bound the claim.
    ids = list(session.execute(open_pushes).scalars().all())
    if peek:
        return [Pending("", (), i) for i in ids]
    if not ids:
        return []
    claim = (
        update(_O)
        .where(_O.c.id.in_(ids), _O.c.completed_at.is_(None))
        .values(completed_at=utcnow(), outcome="done")
        .returning(_O.c.id, _O.c.payload)
    )
    rows = sorted(session.execute(claim).all(), key=lambda row: row.id)
    claimed: list[Pending] = []
    own_seen = False
    for row in rows:
        payload = orjson.loads(row.payload)
        item = Pending(str(payload["patient_id"]), tuple(payload["references"]), row.id)
        if (
            own is not None
            and not own_seen
            and (item.patient_id, item.references) == (own.patient_id, own.references)
        ):
            own_seen = True  # the running task's message: completed with its work
            continue
        claimed.append(item)
    extra = claimed[limit:]
    if extra:
        reopen(session, extra)
    return claimed[:limit]


def reopen(session: Session, items: list[Pending]) -> None:
    """Give claimed pushes back (open again when this transaction commits)."""
    ids = [i.message_id for i in items if i.message_id is not None]
    if ids:
        session.execute(update(_O).where(_O.c.id.in_(ids)).values(completed_at=None, outcome=None))


def lock_patients(session: Session, connection_id: str, patient_ids: set[str]) -> set[str]:
    """Lock the link rows of ``patient_ids`` that no other push holds; the patients now ours.

    Pushes for one patient take turns on its link row, so two versions of one resource are never
    conditionally created at the same moment. A patient without a link row yet is ours (its
    first push creates the row; a concurrent one fails on the key and retries). On SQLite the
    single writer already serialises pushes.
    """
    if not patient_ids or session.get_bind().dialect.name != "postgresql":
        return set(patient_ids)
    where = (
        col(PatientLink.connection_id) == connection_id,
        col(PatientLink.patient_id).in_(sorted(patient_ids)),
    )
    existing = set(
        session.execute(select(col(PatientLink.patient_id)).where(*where)).scalars().all()
    )
    locked = set(
        session.execute(
            select(col(PatientLink.patient_id)).where(*where).with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    return (patient_ids - existing) | locked
