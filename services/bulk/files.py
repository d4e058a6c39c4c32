"""Downloading an export file: consent checked again, each patient's disclosure audited."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from sqlmodel import Session, col, select

from careloop.integrations.egress import EHR_SYNC, TENANT_POLICY, Decision, Disclosure
from careloop.services.audit.egress_guard import session_guard
from careloop.services.bulk.models import ExportFile, ExportJob
from careloop.services.common.errors import ApiError

MAX_FILE_NUMBER = 10**9


def destination(client_id: str) -> str:
    """The audited destination of a client's exports."""
    return f"bulk-export:{client_id}"


def read_file(session: Session, job: ExportJob, rtype: str, number: int) -> ExportFile:
    """One of ``job``'s files (404 if it has none by that type and number)."""
    found = session.exec(
        select(ExportFile).where(
            col(ExportFile.job_id) == job.id,
            ExportFile.resource_type == rtype,
            ExportFile.number == number,
        )
    ).first()
    if found is None:
        raise ApiError.not_found(f"file {number} of the export")
    return found


def release(
    session: Session, job: ExportJob, file: ExportFile, defaults: Mapping[str, Decision]
) -> bytes:
    """The file's lines whose patients' consent permits EHR sync now, audited per patient.

    A patient who revoked consent since the file was written has their lines dropped (audited
    ``blocked``); every other patient in it gets one ``success`` egress record naming the
    resources sent. Lines of no patient (Practitioner, Group...) are not consent-gated. The
    records are added to ``session``: the caller commits them before the data leaves.
    """
    lines = file.content.split("\n") if file.content else []
    meta: list[tuple[str, str | None]] = [(str(r), p) for r, p in orjson.loads(file.lines)]
    guard = session_guard(session, job.tenant_id, f"client:{job.client_id}", defaults)
    by_patient: dict[str, list[str]] = {}
    for ref, patient in meta:
        if patient is not None:
            by_patient.setdefault(patient, []).append(ref)
    guard.prefetch(list(by_patient))
    denied: set[str] = set()
    where = destination(job.client_id)
    for patient, refs in by_patient.items():
        reason = guard.consent(patient, EHR_SYNC)
        disclosure = Disclosure(patient, entities=tuple(refs), purpose=EHR_SYNC)
        if reason is None:
            guard.record(where, "success", disclosure)
        else:
            denied.add(patient)
            why = reason if reason == TENANT_POLICY else f"Consent/{reason}"
            guard.record(where, "blocked", disclosure, why)
    kept = [
        line for line, (_ref, patient) in zip(lines, meta, strict=True) if patient not in denied
    ]
    return "".join(line + "\n" for line in kept).encode()
