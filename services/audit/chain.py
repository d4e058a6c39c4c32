"""The hash chain of the audit trail: each entry's hash covers its fields and the previous hash.

One chain per tenant (``seq`` 1, 2, ... within a tenant): tenants are verified, exported and
checkpointed on their own, and appends in one tenant never wait for another's. Every
``AuditRecord`` added to any session is chained as it is flushed (``before_flush``), so every
writer (reads, searches, egress, sign-ins, token grants) is covered without calling anything.

Appends never fork the chain: on PostgreSQL a transaction-scoped advisory lock per tenant is
taken before the head is read, and held until commit; on SQLite a no-op UPDATE takes the
database write lock first. The unique index on (tenant_id, seq) is the last line of defence.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.orm import Session as OrmSession

from careloop.services.audit.models import AuditRecord

GENESIS = "0" * 64
"""The ``prev_hash`` of a tenant's first entry."""

CHAINED_FIELDS = (
    "tenant_id",
    "seq",
    "recorded",
    "kind",
    "action",
    "agent",
    "purpose",
    "entity",
    "destination",
    "outcome",
)


def canonical(fields: dict[str, Any], prev_hash: str) -> bytes:
    """The bytes an entry's hash covers: its fields and ``prev_hash`` as sorted, compact JSON."""
    body = {name: fields[name] for name in CHAINED_FIELDS}
    recorded = body["recorded"]
    if not isinstance(recorded, str):
        body["recorded"] = recorded.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body["prev_hash"] = prev_hash
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def entry_hash(fields: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) of the canonical form."""
    return hashlib.sha256(canonical(fields, prev_hash)).hexdigest()


def record_fields(record: AuditRecord) -> dict[str, Any]:
    """The chained fields of ``record``."""
    return {name: getattr(record, name) for name in CHAINED_FIELDS}


def _lock_key(tenant_id: str) -> int:
    # A signed 64-bit key for pg_advisory_xact_lock, stable across processes (unlike hash()).
    digest = hashlib.sha256(b"careloop-audit:" + tenant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _head(session: OrmSession, tenant_id: str) -> tuple[int, str]:
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(tenant_id)})
    else:
        connection.execute(text("UPDATE audit_record SET seq = seq WHERE 0 = 1"))
    row = connection.execute(
        text(
            "SELECT seq, hash FROM audit_record WHERE tenant_id = :t AND seq IS NOT NULL"
            " ORDER BY seq DESC LIMIT 1"
        ),
        {"t": tenant_id},
    ).first()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def chain(session: OrmSession, records: list[AuditRecord]) -> None:
    """Give each new record its ``seq``, ``prev_hash`` and ``hash``, in the order added."""
    by_tenant: dict[str, list[AuditRecord]] = defaultdict(list)
    for record in records:
        by_tenant[record.tenant_id].append(record)
    for tenant_id in sorted(by_tenant):  # one order for every transaction: no lock cycles
        seq, prev = _head(session, tenant_id)
        for record in by_tenant[tenant_id]:
            seq += 1
            record.seq = seq
            record.prev_hash = prev
            record.hash = prev = entry_hash(record_fields(record), prev)


@event.listens_for(OrmSession, "before_flush")
def _chain_new_records(session: OrmSession, _context: Any, _instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, AuditRecord) and obj.seq is None]
    if new:
        chain(session, new)
