"""Accepting symptom reports: validate, find or create the patient, map to FHIR, store once."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select, tuple_
from sqlmodel import Session

from careloop.fhir.errors import MappingError
from careloop.fhir.provenance import map_provenance
from careloop.fhir.reports import ReportContext, map_rating_report, map_scored_report
from careloop.services.auth.tokens import Principal
from careloop.services.common.bulk_insert import insert_rows
from careloop.services.common.errors import Issue
from careloop.services.db import utcnow
from careloop.services.ehr.pushes import resources_changed
from careloop.services.metrics.recording import reports_accepted
from careloop.services.outbox.record import readings_created
from careloop.services.patients.service import create_patients, find_patients
from careloop.services.reports.models import SymptomReport
from careloop.services.reports.schemas import SCORED, SymptomReportIn
from careloop.services.store.repository import ResourceStore

_S = SymptomReport.__table__  # type: ignore[attr-defined]
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class ReportOutcome:
    """What happened to one report: created, recognised as a duplicate, or refused."""

    status: int
    report_id: str | None = None
    patient: str | None = None
    resources: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The public JSON of this outcome."""
        if self.issues:
            return {
                "status": self.status,
                "outcome": {
                    "resourceType": "OperationOutcome",
                    "issue": [i.as_fhir() for i in self.issues],
                },
            }
        return {
            "status": self.status,
            "id": self.report_id,
            "patient": self.patient,
            "resources": self.resources,
        }


def report_hash(report: SymptomReportIn) -> str:
    """A fingerprint of a report's content, independent of key order and time notation."""
    data = report.model_dump(mode="json", exclude_none=True)
    data["effective"] = report.effective.timestamp()
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class _Prepared:
    index: int
    report: SymptomReportIn
    content_hash: str
    ident: tuple[str, str]
    report_id: str = ""
    key: tuple[str, str, datetime, str] | None = None
    resources: list[dict[str, Any]] = field(default_factory=list)


def _map(prepared: _Prepared, ctx: ReportContext) -> list[dict[str, Any]]:
    report = prepared.report
    if report.instrument in SCORED:
        if report.value is not None:
            raise MappingError("value", f"{report.instrument} takes answers, not a value")
        if report.answers is None:
            raise MappingError("answers", f"{report.instrument} needs answers")
        return map_scored_report(ctx, report.instrument, report.answers, report.difficulty)
    if report.answers is not None:
        raise MappingError("answers", f"{report.instrument} takes a value, not answers")
    if report.difficulty is not None:
        raise MappingError("difficulty", "difficulty belongs to phq-9 only")
    if report.value is None:
        raise MappingError("value", f"{report.instrument} needs a value")
    return map_rating_report(ctx, report.instrument, report.value)


def ingest_reports(
    session: Session, principal: Principal, reports: Sequence[SymptomReportIn]
) -> list[ReportOutcome]:
    """Accept ``reports`` into the caller's unit of work (the caller commits).

    Each report gets its own outcome; an invalid one does not stop the others. A report already
    accepted (same patient, instrument, effective time and app report id) is answered with the
    stored result, or with 409 when its content differs.
    """
    store = ResourceStore(session, principal.tenant_id)
    now = utcnow()
    outcomes: list[ReportOutcome | None] = [None] * len(reports)
    prepared = [
        _Prepared(i, r, report_hash(r), (r.patient.system, r.patient.value))
        for i, r in enumerate(reports)
    ]
    known = find_patients(session, principal.tenant_id, (p.ident for p in prepared))
    new_ids: dict[tuple[str, str], str] = {}
    valid: list[_Prepared] = []
    for p in prepared:
        report = p.report
        if report.effective > now + CLOCK_SKEW:
            outcomes[p.index] = _refused("effective", "effective time is in the future")
            continue
        patient_id = known.get(p.ident) or new_ids.setdefault(p.ident, str(uuid.uuid4()))
        p.key = (patient_id, report.instrument, report.effective, report.app_report_id or "")
        p.report_id = str(uuid.uuid4())
        ctx = ReportContext(
            report_id=p.report_id,
            patient_id=patient_id,
            effective=report.effective,
            recorded=now,
            client_id=principal.client_id,
            device_name=report.device.name if report.device else None,
            device_version=report.device.version if report.device else None,
            app_report_id=report.app_report_id,
            note=report.note,
        )
        try:
            p.resources = _map(p, ctx)
        except MappingError as exc:
            outcomes[p.index] = _refused(exc.field, exc.message)
            continue
        valid.append(p)

    firsts: dict[tuple[str, str, datetime, str], _Prepared] = {}
    repeats: list[_Prepared] = []
    for p in valid:
        if _key(p) in firsts:
            repeats.append(p)  # the same report twice in one request: judged by the first
        else:
            firsts[_key(p)] = p
    candidates = list(firsts.values())
    new_idents = {p.ident for p in candidates if p.ident in new_ids}
    create_patients_with_ids = {i: new_ids[i] for i in new_idents}
    create_patients(session, store, create_patients_with_ids)

    rows: list[dict[str, Any]] = []
    created_patient_refs = {f"Patient/{pid}" for pid in create_patients_with_ids.values()}
    for p in candidates:
        refs = [_ref(r) for r in p.resources]
        patient_ref = f"Patient/{_key(p)[0]}"
        targets = list(refs)
        if patient_ref in created_patient_refs:
            targets.append(patient_ref)
            created_patient_refs.discard(patient_ref)
        provenance = map_provenance(p.report_id, targets, now, principal.client_id, _key(p)[0])
        p.resources.append(provenance)
        rows.append(_report_row(p, principal, now))
    inserted = _insert_new(session, rows)
    resources: list[dict[str, Any]] = []
    accepted: dict[tuple[str, str, datetime, str], _ExistingReport] = {}
    for p in candidates:
        if p.report_id in inserted:
            resources.extend(p.resources)
            stored = _ExistingReport(
                p.report_id, f"Patient/{_key(p)[0]}", [_ref(r) for r in p.resources], p.content_hash
            )
            accepted[_key(p)] = stored
            outcomes[p.index] = ReportOutcome(
                201, stored.report_id, stored.patient, stored.resources
            )
    # A report whose natural key was already taken (a retry, here or in a concurrent request,
    # which the insert waited for) is answered with what was stored: rare, so looked up only now.
    taken = [_key(p) for p in candidates if p.report_id not in inserted]
    accepted.update(_existing_reports(session, principal.tenant_id, taken))
    for p in [p for p in candidates if p.report_id not in inserted] + repeats:
        previous = accepted.get(_key(p))
        outcomes[p.index] = (
            _duplicate(previous, p.content_hash) if previous is not None else _transient()
        )
    store.create_many(resources)
    readings_created(
        session,
        principal.tenant_id,
        [r for r in resources if r["resourceType"] == "Observation"],
    )
    by_patient: dict[str, list[str]] = {}
    for row in rows:
        if row["id"] in inserted:
            by_patient.setdefault(row["patient_id"], []).extend(row["resources"].split())
    resources_changed(session, principal.tenant_id, by_patient)
    reports_accepted(session, (p.report.instrument for p in candidates if p.report_id in inserted))
    return [o if o is not None else _refused("body", "not processed") for o in outcomes]


def _report_row(p: _Prepared, principal: Principal, now: datetime) -> dict[str, Any]:
    return {
        "id": p.report_id,
        "tenant_id": principal.tenant_id,
        "client_id": principal.client_id,
        "patient_id": _key(p)[0],
        "instrument": p.report.instrument,
        "effective": p.report.effective,
        "app_report_id": _key(p)[3],
        "content_hash": p.content_hash,
        "resources": " ".join(_ref(r) for r in p.resources),
        "created_at": now,
    }


_NATURAL_KEY = ["tenant_id", "patient_id", "instrument", "effective", "app_report_id"]


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert report rows; the ids of those inserted (one whose natural key is taken is not)."""
    inserted = insert_rows(session, _S, rows, returning=("id",), skip_conflicts_on=_NATURAL_KEY)
    return {str(r.id) for r in inserted}


def _transient() -> ReportOutcome:
    # The natural key was taken, yet its report is gone (deleted meanwhile): nothing was stored.
    return ReportOutcome(503, issues=[Issue("transient", "the report collided; retry", "body")])


def _key(p: _Prepared) -> tuple[str, str, datetime, str]:
    assert p.key is not None
    return p.key


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _refused(field_name: str, message: str) -> ReportOutcome:
    return ReportOutcome(422, issues=[Issue("invalid", message, field_name)])


@dataclass
class _ExistingReport:
    report_id: str
    patient: str
    resources: list[str]
    content_hash: str


def _duplicate(previous: _ExistingReport, content_hash: str) -> ReportOutcome:
    if previous.content_hash != content_hash:
        return ReportOutcome(
            409,
            issues=[
                Issue(
                    "duplicate",
                    "a different report with this patient, instrument, effective time and "
                    f"app_report_id was already accepted as {previous.report_id}",
                    "app_report_id",
                )
            ],
        )
    return ReportOutcome(200, previous.report_id, previous.patient, previous.resources)


def _existing_reports(
    session: Session, tenant_id: str, keys: list[tuple[str, str, datetime, str]]
) -> dict[tuple[str, str, datetime, str], _ExistingReport]:
    found: dict[tuple[str, str, datetime, str], _ExistingReport] = {}
    wanted = list(set(keys))
    for start in range(0, len(wanted), 300):
        chunk = wanted[start : start + 300]
        rows = session.execute(
            select(
                _S.c.id,
                _S.c.patient_id,
                _S.c.instrument,
                _S.c.effective,
                _S.c.app_report_id,
                _S.c.content_hash,
                _S.c.resources,
            ).where(
                _S.c.tenant_id == tenant_id,
                _S.c.patient_id.in_({k[0] for k in chunk}),
                tuple_(_S.c.instrument, _S.c.effective, _S.c.app_report_id).in_(
                    [(k[1], k[2], k[3]) for k in chunk]
                ),
            )
        ).all()
        for r in rows:
            key = (r.patient_id, r.instrument, r.effective, r.app_report_id)
            found[key] = _ExistingReport(
                r.id, f"Patient/{r.patient_id}", r.resources.split(), r.content_hash
            )
    return found
