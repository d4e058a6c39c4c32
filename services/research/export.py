"""The research export job: the store, in ``seq`` order, de-identified into NDJSON files.

Resources are read a batch at a time and written as they are read, so memory holds one batch
and the permitted patients' ids, whatever the store's size. Each file is written beside its final
name and renamed when complete, so a failed run leaves no partial ``<Type>.ndjson``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import orjson
from sqlalchemy import Engine, select

from careloop.fhir.deidentify import Deidentifier
from careloop.fhir.validation import FhirValidationError, check_resource
from careloop.integrations.egress import Decision
from careloop.services.audit.service import record_event
from careloop.services.research.cohort import AGENT, decide_cohort
from careloop.services.store.models import FhirResource
from careloop.services.unit_of_work import session_scope

_R = FhirResource.__table__  # type: ignore[attr-defined]

DEFAULT_TYPES = ("Patient", "Observation", "QuestionnaireResponse", "RiskAssessment", "Encounter")
"""The patient-compartment clinical types careloop stores: exported unless told otherwise."""
EXPORTABLE_TYPES = frozenset(DEFAULT_TYPES)
"""Only these: Consent, AuditEvent, Provenance, Task, Communication and Flag describe who did
what with the record (people, clients, messages) rather than the patient's health, and Group
spans many patients' consents; none is exported."""


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the tenant, where, which types, changed since when, with which key."""

    tenant_id: str
    out_dir: Path
    key: bytes
    defaults: dict[str, Decision]
    today: date
    types: tuple[str, ...] = DEFAULT_TYPES
    since: datetime | None = None
    batch: int = 500


@dataclass
class ExportResult:
    """Counts only (never ids): resources written per type, patients exported and withheld."""

    counts: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    """Resources left out because their de-identified form was not valid FHIR."""
    patients_exported: int = 0
    patients_withheld: int = 0


def run_export(engine: Engine, request: ExportRequest) -> ExportResult:
    """Decide and audit each patient's consent, then write ``<Type>.ndjson`` per type."""
    cohort = decide_cohort(engine, request.tenant_id, request.defaults, request.batch)
    result = ExportResult(
        patients_exported=len(cohort.permitted), patients_withheld=cohort.withheld
    )
    deid = Deidentifier(request.key, request.tenant_id, request.today)
    request.out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        for rtype in request.types:
            written, skipped = _write_type(engine, request, deid, rtype, cohort.permitted)
            result.counts[rtype] = written
            result.skipped += skipped
    except BaseException:
        with session_scope(engine) as session:
            record_event(session, request.tenant_id, "export", AGENT, "failed", "research-export")
        raise
    with session_scope(engine) as session:
        record_event(session, request.tenant_id, "export", AGENT, "success", "research-export")
    return result


def _write_type(
    engine: Engine, request: ExportRequest, deid: Deidentifier, rtype: str, permitted: set[str]
) -> tuple[int, int]:
    final = request.out_dir / f"{rtype}.ndjson"
    partial = final.with_name(final.name + ".part")
    written = skipped = 0
    after = 0
    partial.unlink(missing_ok=True)
    partial.touch(mode=0o600)  # de-identified is not public: readable by the exporter only
    with partial.open("wb") as out:
        while True:
            query = (
                select(_R.c.seq, _R.c.patient_id, _R.c.content)
                .where(
                    _R.c.tenant_id == request.tenant_id,
                    _R.c.resource_type == rtype,
                    _R.c.seq > after,
                )
                .order_by(_R.c.seq)
                .limit(request.batch)
            )
            if request.since is not None:
                query = query.where(_R.c.last_updated >= request.since)
            with engine.connect() as connection:
                rows = connection.execute(query).all()
            if not rows:
                break
            after = rows[-1].seq
            for row in rows:
                if row.patient_id not in permitted:
                    continue
                clean = deid.resource(orjson.loads(row.content))
                try:
                    check_resource(clean)
                except FhirValidationError:
                    skipped += 1
                    continue
                out.write(orjson.dumps(clean) + b"\n")
                written += 1
    partial.replace(final)
    return written, skipped
