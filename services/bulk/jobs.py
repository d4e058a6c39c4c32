"""Export jobs: kick-off (job, event and audit in one unit of work), lookup, cancel, prune."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import delete, func, select
from sqlmodel import Session, col

from careloop.services.audit.service import record_event
from careloop.services.auth.tokens import Principal
from careloop.services.bulk.models import (
    ACTIVE_STATES,
    ExportFile,
    ExportJob,
    ExportLevel,
    JobState,
)
from careloop.services.bulk.params import KickOff
from careloop.services.common.errors import ApiError, Issue
from careloop.services.db import utcnow
from careloop.services.outbox.events import ExportRequested
from careloop.services.outbox.record import record
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore
from careloop.services.tenancy.models import AppClient
from careloop.services.unit_of_work import begin_writing

MAX_GROUP_MEMBERS = 10_000
"""Members of a Group an export follows (careloop's group sessions have a handful)."""
PRUNE_BATCH = 500


@dataclass(frozen=True)
class Scope:
    """Whose data a kick-off asks for: every resource, every patient's, or a Group's members'."""

    level: ExportLevel
    group_id: str | None = None
    patients: tuple[str, ...] = ()


def group_scope(session: Session, tenant_id: str, group_id: str) -> Scope:
    """The scope of a Group export: its ``Patient/<id>`` members (404 for an unknown Group)."""
    stored = ResourceStore(session, tenant_id).read("Group", group_id)
    if stored is None:
        raise ApiError.not_found(f"Group/{group_id}")
    members: list[str] = []
    for member in stored.as_dict().get("member") or []:
        entity = member.get("entity") if isinstance(member, dict) else None
        ref = entity.get("reference") if isinstance(entity, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/") and ref[8:] not in members:
            members.append(ref[8:])
    if len(members) > MAX_GROUP_MEMBERS:
        raise ApiError(
            422,
            [Issue("too-costly", f"an export follows {MAX_GROUP_MEMBERS} members at most")],
        )
    return Scope(ExportLevel.GROUP, group_id, tuple(members))


def _active_jobs(session: Session, principal: Principal, now: datetime) -> int:
    query = select(func.count()).where(
        col(ExportJob.tenant_id) == principal.tenant_id,
        col(ExportJob.client_id) == principal.client_id,
        col(ExportJob.state).in_(ACTIVE_STATES),
        col(ExportJob.expires_at) > now,
    )
    return int(session.execute(query).scalar_one())


def start_export(
    session: Session,
    settings: Settings,
    principal: Principal,
    scope: Scope,
    kickoff: KickOff,
    request_url: str,
) -> ExportJob:
    """Record the job, its outbox event and the kick-off's audit (the caller commits all three).

    Raises 429 when the client has ``bulk_export_max_active_jobs`` unfinished exports.
    """
    # One client's kick-offs count in turn, or two at once could both pass the limit: the
    # client's row locked (PostgreSQL), the write lock taken first (SQLite).
    begin_writing(session)
    session.execute(
        select(AppClient.client_id)  # type: ignore[call-overload]
        .where(AppClient.client_id == principal.client_id)
        .with_for_update()
    )
    now = utcnow()
    if _active_jobs(session, principal, now) >= settings.bulk_export_max_active_jobs:
        raise ApiError(
            429,
            [Issue("throttled", "this client has as many exports running as it may")],
            {"Retry-After": str(settings.bulk_export_retry_after_seconds)},
        )
    job = ExportJob(
        id=uuid.uuid4().hex,
        tenant_id=principal.tenant_id,
        client_id=principal.client_id,
        level=scope.level,
        group_id=scope.group_id,
        patients=orjson.dumps(list(scope.patients)).decode()
        if scope.level == ExportLevel.GROUP
        else None,
        types=",".join(kickoff.types),
        since=kickoff.since,
        transaction_time=now,
        state=JobState.ACCEPTED,
        request_url=request_url,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(hours=settings.bulk_export_expiry_hours),
    )
    session.add(job)
    session.flush()
    record(session, principal.tenant_id, ExportRequested(job.id))
    record_event(
        session,
        principal.tenant_id,
        "export",
        f"client:{principal.client_id}",
        "success",
        entity=f"export:{job.id}",
    )
    return job


def visible_job(session: Session, principal: Principal, job_id: str) -> ExportJob:
    """The caller's own job, unless cancelled or expired (404 otherwise, whoever asks)."""
    job = session.get(ExportJob, job_id) if len(job_id) == 32 and job_id.isalnum() else None
    if (
        job is None
        or job.tenant_id != principal.tenant_id
        or job.client_id != principal.client_id
        or job.state == JobState.CANCELLED
        or job.expires_at <= utcnow()
    ):
        raise ApiError.not_found(f"export {job_id[:32]}")
    return job


def cancel(session: Session, job: ExportJob) -> None:
    """Cancel ``job`` and delete its files; a worker on it stops at its next chunk."""
    job.state = JobState.CANCELLED
    job.updated_at = utcnow()
    session.add(job)
    session.execute(delete(ExportFile).where(col(ExportFile.job_id) == job.id))


def prune_exports(session: Session, now: datetime | None = None) -> int:
    """Delete up to a batch of expired jobs (and cancelled ones) with their files; how many."""
    now = now or utcnow()
    ids = list(
        session.execute(
            select(col(ExportJob.id))
            .where(
                (col(ExportJob.expires_at) <= now) | (col(ExportJob.state) == JobState.CANCELLED)
            )
            .limit(PRUNE_BATCH)
        ).scalars()
    )
    if ids:
        session.execute(delete(ExportFile).where(col(ExportFile.job_id).in_(ids)))
        session.execute(delete(ExportJob).where(col(ExportJob.id).in_(ids)))
    return len(ids)
