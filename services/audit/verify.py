"""Recompute the audit chain and check its signed checkpoints."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass

from sqlmodel import Session, col, select

from careloop.services.audit.chain import GENESIS, entry_hash, record_fields
from careloop.services.audit.checkpoints import verified_checkpoints
from careloop.services.audit.models import AuditCheckpoint, AuditRecord


@dataclass(frozen=True)
class Problem:
    """The first bad entry of a tenant's chain (ids and numbers only: no PHI)."""

    tenant_id: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"tenant={self.tenant_id} seq={self.seq}: {self.reason}"


@dataclass(frozen=True)
class TenantResult:
    """What verifying one tenant's chain found."""

    tenant_id: str
    entries: int
    checkpoints: int
    problem: Problem | None


def tenants(session: Session) -> list[str]:
    """Every tenant with audit entries or checkpoints."""
    found = set(session.exec(select(AuditRecord.tenant_id).distinct()).all())
    found |= set(session.exec(select(AuditCheckpoint.tenant_id).distinct()).all())
    return sorted(found)


def _entries(session: Session, tenant_id: str) -> Generator[AuditRecord]:
    result = session.exec(
        select(AuditRecord)
        .where(AuditRecord.tenant_id == tenant_id)
        .order_by(col(AuditRecord.seq), col(AuditRecord.id))
        .execution_options(yield_per=1000)
    )
    try:
        yield from result
    finally:  # a walk that stops at a bad entry closes the server-side cursor now
        result.close()


def _walk(
    session: Session, tenant_id: str, wanted: set[int]
) -> tuple[int, Problem | None, dict[int, str]]:
    # Only the hashes at checkpointed positions are kept: a chain can be millions long.
    entries = _entries(session, tenant_id)
    with closing(entries):
        return _walk_entries(tenant_id, entries, wanted)


def _walk_entries(
    tenant_id: str, entries: Iterator[AuditRecord], wanted: set[int]
) -> tuple[int, Problem | None, dict[int, str]]:
    expected, prev = 1, GENESIS
    seen: dict[int, str] = {}
    for record in entries:
        seq = record.seq
        if seq is None:
            return (
                expected - 1,
                Problem(tenant_id, expected, "entry without a place in the chain"),
                seen,
            )
        if seq < expected:
            return (
                expected - 1,
                Problem(tenant_id, seq, "duplicated position (inserted entry)"),
                seen,
            )
        if seq > expected:
            return expected - 1, Problem(tenant_id, expected, "entry removed (gap in seq)"), seen
        if record.prev_hash != prev:
            return (
                expected - 1,
                Problem(tenant_id, seq, "link broken (entry removed or reordered)"),
                seen,
            )
        if entry_hash(record_fields(record), prev) != record.hash:
            return expected - 1, Problem(tenant_id, seq, "entry altered (hash mismatch)"), seen
        prev = record.hash
        if seq in wanted:
            seen[seq] = prev
        expected += 1
    return expected - 1, None, seen


def verify_tenant(session: Session, tenant_id: str) -> TenantResult:
    """Walk ``tenant_id``'s chain from seq 1 and compare it with every checkpoint."""
    checkpoints = verified_checkpoints(session, tenant_id)
    wanted = {int(p.get("seq", 0)) for _, p in checkpoints if p is not None}
    count, problem, hashes = _walk(session, tenant_id, wanted)
    if problem is None:
        for _, payload in checkpoints:
            if payload is None:
                problem = Problem(tenant_id, count + 1, "checkpoint with an invalid signature")
                break
            seq = int(payload.get("seq", 0))
            if seq > count:
                problem = Problem(tenant_id, count + 1, f"log truncated (checkpoint at seq {seq})")
                break
            if hashes.get(seq) != payload.get("hash"):
                problem = Problem(tenant_id, seq, "entry differs from its signed checkpoint")
                break
    return TenantResult(tenant_id, count, len(checkpoints), problem)


def verify(session: Session, tenant_id: str | None = None) -> list[TenantResult]:
    """Verify one tenant's chain or every tenant's."""
    return [verify_tenant(session, t) for t in ([tenant_id] if tenant_id else tenants(session))]
