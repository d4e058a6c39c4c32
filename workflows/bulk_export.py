"""Working a bulk export job: one chunk (at most one file) per run, resumable at any instant.

The database decides what is done: a chunk reads the next page of the current type in ``seq``
order past the job's cursor, writes it as one file, and moves the cursor, all in the run's
transaction. A worker killed mid-chunk leaves nothing of it; the re-run writes the same file
(the (job, type, number) key refuses a second copy).
"""

from __future__ import annotations

import logging
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


def _write_file(session: Session, job: ExportJob, rtype: str, kept: list[Any]) -> None:
    number = 1 + int(
        session.execute(
            select(func.count()).where(
                col(ExportFile.job_id) == job.id, col(ExportFile.resource_type) == rtype
            )
        ).scalar_one()
    )
    session.add(
        ExportFile(
            job_id=job.id,
            resource_type=rtype,
            number=number,
            count=len(kept),
            content="\n".join(r.content for r in kept),
            lines=orjson.dumps([[f"{rtype}/{r.id}", r.patient_id] for r in kept]).decode(),
        )
    )


def _chunk(session: Session, settings: Settings, job: ExportJob) -> None:
    types = [t for t in job.types.split(",") if t]
    if job.type_index >= len(types):
        job.state = JobState.COMPLETED
        return
    rtype = types[job.type_index]
    limit = settings.bulk_export_file_resources
    rows = _page(session, job, rtype, limit)
    permitted = _permitted(session, settings, job, rows)
    # a patient whose consent denies EHR sync is left out; resources of no patient are not gated
    kept = [r for r in rows if r.patient_id is None or r.patient_id in permitted]
    if kept:
        _write_file(session, job, rtype, kept)
    if len(rows) < limit:
        job.type_index += 1
        job.last_seq = 0
    else:
        job.last_seq = int(rows[-1].seq)
    job.state = JobState.COMPLETED if job.type_index >= len(types) else JobState.RUNNING


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
        with session.begin_nested():
            _chunk(session, settings, job)
            session.flush()
    except DBAPIError:
        raise
    except Exception as exc:  # noqa: BLE001  (the job fails; the error class is kept, no data)
        log.warning("export %s failed: %s", job.id, type(exc).__name__)
        session.refresh(job)
        job.state = JobState.FAILED
        job.error = type(exc).__name__[:100]
    job.updated_at = now
    if job.state == JobState.COMPLETED:
        job.expires_at = now + timedelta(hours=settings.bulk_export_expiry_hours)
    session.add(job)
    return job.state != JobState.RUNNING
