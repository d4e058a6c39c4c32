"""Working a bulk export job: one chunk (at most one file) per run, resumable at any instant.

The database decides what is done: a chunk reads the next page of the current type in ``seq``
order past the job's cursor, writes it as one file, and moves the cursor, all in the run's
transaction. A worker killed mid-chunk leaves nothing of it; the re-run writes the same file
(the (job, type, number) key refuses a second copy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col

from careloop.integrations.egress import EHR_SYNC
from careloop.services.audit.egress_guard import session_guard
from careloop.services.bulk.models import (
    ACTIVE_STATES,
    ExportFile,
    ExportJob,
    ExportLevel,
    JobState,
)
from careloop.services.consents.policy import tenant_defaults
from careloop.services.db import utcnow
from careloop.services.settings import Settings
from careloop.services.store.models import FhirResource

log = logging.getLogger("careloop.bulk")
_R = FhirResource.__table__  # type: ignore[attr-defined]


def _page(session: Session, job: ExportJob, rtype: str, limit: int) -> list[Any]:
    query = (
        select(_R.c.seq, _R.c.id, _R.c.patient_id, _R.c.content)
        .where(
            _R.c.tenant_id == job.tenant_id,
            _R.c.resource_type == rtype,
            _R.c.seq > job.last_seq,
            # as of the kick-off: what changed since is for the next `_since` export
            _R.c.last_updated <= job.transaction_time,
        )
        .order_by(_R.c.seq)
        .limit(limit)
    )
    if job.since is not None:
        query = query.where(_R.c.last_updated > job.since)
    if job.level == ExportLevel.PATIENT:
        query = query.where(_R.c.patient_id.is_not(None))
    elif job.level == ExportLevel.GROUP:
        members = orjson.loads(job.patients or "[]")
        query = query.where(_R.c.patient_id.in_(members))
    return list(session.execute(query).all())


def _permitted(session: Session, settings: Settings, job: ExportJob, rows: list[Any]) -> set[str]:
    """The patients among ``rows`` whose consent (or tenant policy) permits EHR sync now."""
    patients = list(dict.fromkeys(r.patient_id for r in rows if r.patient_id is not None))
    if not patients:
        return set()
    defaults = tenant_defaults(settings.consent_defaults, job.tenant_id)
    guard = session_guard(session, job.tenant_id, f"client:{job.client_id}", defaults)
    guard.prefetch(patients)  # one read of every patient's Consents for the page
    return {p for p in patients if guard.consent(p, EHR_SYNC) is None}


@dataclass(frozen=True)
class Step:
    """What one chunk comes to: the file to add (None: nothing to write) and the new cursor."""

    file: ExportFile | None
    type_index: int
    last_seq: int


def _file(session: Session, job: ExportJob, rtype: str, kept: list[Any]) -> ExportFile:
    number = 1 + int(
        session.execute(
            select(func.count()).where(
                col(ExportFile.job_id) == job.id, col(ExportFile.resource_type) == rtype
            )
        ).scalar_one()
    )
    return ExportFile(
        job_id=job.id,
        resource_type=rtype,
        number=number,
        count=len(kept),
        content="\n".join(r.content for r in kept),
        lines=orjson.dumps([[f"{rtype}/{r.id}", r.patient_id] for r in kept]).decode(),
    )


def _step(session: Session, settings: Settings, job: ExportJob) -> Step:
    """Read the next chunk (no writes: a failure here leaves the session clean)."""
    types = [t for t in job.types.split(",") if t]
    if job.type_index >= len(types):
        return Step(None, len(types), 0)
    rtype = types[job.type_index]
    limit = settings.bulk_export_file_resources
    rows = _page(session, job, rtype, limit)
    permitted = _permitted(session, settings, job, rows)
    # a patient whose consent denies EHR sync is left out; resources of no patient are not gated
    kept = [r for r in rows if r.patient_id is None or r.patient_id in permitted]
    file = _file(session, job, rtype, kept) if kept else None
    if len(rows) < limit:
        return Step(file, job.type_index + 1, 0)
    return Step(file, job.type_index, int(rows[-1].seq))


def run_chunk(session: Session, settings: Settings, job_id: str) -> bool:
    """Do the next chunk of job ``job_id`` in ``session`` (the caller commits); whether it is done.

    A cancelled, expired, finished or unknown job is done at once. A chunk failing for a reason
    other than the database (a retry's business) fails the job, answered 500 when polled.
    """
    job = session.get(ExportJob, job_id, with_for_update=True)
    now = utcnow()
    if job is None or job.state not in ACTIVE_STATES or job.expires_at <= now:
        return True
    try:
        step = _step(session, settings, job)
    except DBAPIError:
        raise
    except Exception as exc:  # noqa: BLE001  (the job fails; the error class is kept, no data)
        log.warning("export %s failed: %s", job.id, type(exc).__name__)
        job.state = JobState.FAILED
        job.error = type(exc).__name__[:100]
    else:
        if step.file is not None:
            session.add(step.file)
        job.type_index, job.last_seq = step.type_index, step.last_seq
        done = job.type_index >= len([t for t in job.types.split(",") if t])
        job.state = JobState.COMPLETED if done else JobState.RUNNING
    job.updated_at = now
    if job.state == JobState.COMPLETED:
        job.expires_at = now + timedelta(hours=settings.bulk_export_expiry_hours)
    session.add(job)
    return job.state != JobState.RUNNING
