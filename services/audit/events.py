"""FHIR AuditEvents and the patient access report, built on read from the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from careloop.fhir.audit_events import AuditEntry, map_audit_event
from careloop.integrations.egress.consent import PURPOSE_CODINGS, V3_ACT_REASON
from careloop.services.audit.models import AuditRecord
from careloop.services.store.models import FhirResource

MAX_RESULTS = 1000


def entry_kind(record: AuditRecord) -> str:
    """The AuditEvent kind of a stored record (reads and searches share the kind ``access``)."""
    if record.kind == "access":
        return "search" if record.destination.startswith("search") else "read"
    return record.kind


def _references(record: AuditRecord) -> list[str]:
    return [ref for ref in record.entity.split(" ") if "/" in ref]


def _purpose_coding(purpose: str) -> tuple[str, str] | None:
    """The coding of a recorded purpose: a consent purpose's, or a v3-ActReason code as
    recorded before purposes were named (``TREAT``)."""
    if not purpose:
        return None
    return PURPOSE_CODINGS.get(purpose, (V3_ACT_REASON, purpose))


def audit_event(record: AuditRecord) -> dict[str, Any]:
    """The FHIR AuditEvent of ``record`` (its id is the tenant's chain position)."""
    return map_audit_event(
        AuditEntry(
            id=f"audit-{record.seq}",
            kind=entry_kind(record),
            action=record.action,
            recorded=record.recorded,
            agent=record.agent,
            outcome=record.outcome,
            entities=_references(record),
            purpose=_purpose_coding(record.purpose),
            destination=record.destination if record.kind == "egress" else "",
        )
    )


@dataclass(frozen=True)
class AuditQuery:
    """Filters of ``GET /fhir/AuditEvent`` (all optional)."""

    entity: str | None = None
    """A reference, e.g. ``Patient/123`` (``patient=123`` is the same)."""
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def find_records(session: Session, tenant_id: str, query: AuditQuery) -> list[AuditRecord]:
    """The tenant's entries matching ``query``, newest first (at most MAX_RESULTS)."""
    statement = select(AuditRecord).where(AuditRecord.tenant_id == tenant_id)
    if query.agent:
        statement = statement.where(AuditRecord.agent == query.agent)
    if query.since:
        statement = statement.where(col(AuditRecord.recorded) >= query.since)
    if query.until:
        statement = statement.where(col(AuditRecord.recorded) <= query.until)
    if query.entity:
        statement = statement.where(col(AuditRecord.entity).contains(query.entity))
    rows = session.exec(statement.order_by(col(AuditRecord.seq).desc()).limit(MAX_RESULTS * 2))
    # ``contains`` is a prefix-blind LIKE: keep only whole references (Patient/1 is not Patient/12)
    found = [r for r in rows if not query.entity or query.entity in _references(r)]
    return found[:MAX_RESULTS]


def access_report(
    session: Session, tenant_id: str, patient_id: str, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Who saw or received ``patient_id``'s data, when, why and how it went (newest first).

    An entry concerns the patient when it names the Patient or any resource of theirs.
    """
    own = {
        f"{t}/{i}"
        for t, i in session.exec(
            select(FhirResource.resource_type, FhirResource.id).where(
                FhirResource.tenant_id == tenant_id, FhirResource.patient_id == patient_id
            )
        ).all()
    }
    own.add(f"Patient/{patient_id}")
    statement = select(AuditRecord).where(AuditRecord.tenant_id == tenant_id)
    if since:
        statement = statement.where(col(AuditRecord.recorded) >= since)
    report = []
    for record in session.exec(statement.order_by(col(AuditRecord.seq).desc())):
        seen = [ref for ref in _references(record) if ref.split("/_history")[0] in own]
        if not seen:
            continue
        report.append(
            {
                "seq": record.seq,
                "when": record.recorded.isoformat(),
                "who": record.agent,
                "what": seen,
                "kind": entry_kind(record),
                "purpose": record.purpose or None,
                "destination": record.destination if record.kind == "egress" else None,
                "outcome": record.outcome,
            }
        )
        if len(report) >= MAX_RESULTS:
            break
    return report
