"""What polling an export answers: progress while it runs, the manifest once it is done."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from sqlmodel import Session, col, select

from careloop.services.bulk.models import ExportFile, ExportJob, JobState
from careloop.services.common.fhirtime import format_instant


@dataclass(frozen=True)
class Status:
    """An HTTP answer to a status poll: its code, headers and JSON body (None: no body)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


def status_url(fhir_base: str, job_id: str) -> str:
    """The ``Content-Location`` of a job: where it is polled and cancelled."""
    return f"{fhir_base}/$export-status/{job_id}"


def file_url(fhir_base: str, job_id: str, rtype: str, number: int) -> str:
    """Where one of a job's files is downloaded."""
    return f"{fhir_base}/$export-file/{job_id}/{quote(rtype)}/{number}"


def _types(job: ExportJob) -> list[str]:
    return [t for t in job.types.split(",") if t]


def progress(job: ExportJob) -> str:
    """``X-Progress``: how many of the job's types are written."""
    return f"{min(job.type_index, len(_types(job)))}/{len(_types(job))} types"


def manifest(session: Session, job: ExportJob, fhir_base: str) -> dict[str, Any]:
    """The completed job's manifest (Bulk Data v2): one output entry per file, in type order."""
    order = {t: i for i, t in enumerate(_types(job))}
    rows = session.execute(
        select(ExportFile.resource_type, ExportFile.number, ExportFile.count).where(
            col(ExportFile.job_id) == job.id
        )
    ).all()
    rows = sorted(rows, key=lambda r: (order.get(r.resource_type, len(order)), r.number))
    return {
        "transactionTime": format_instant(job.transaction_time),
        "request": job.request_url,
        "requiresAccessToken": True,
        "output": [
            {
                "type": r.resource_type,
                "url": file_url(fhir_base, job.id, r.resource_type, r.number),
                "count": r.count,
            }
            for r in rows
        ],
        "error": [],
    }


def job_status(session: Session, job: ExportJob, fhir_base: str, retry_after: int) -> Status:
    """202 with progress while the job runs, 200 with the manifest, 500 if it failed."""
    if job.state == JobState.COMPLETED:
        expires = format_datetime(job.expires_at, usegmt=True)
        return Status(200, {"Expires": expires}, manifest(session, job, fhir_base))
    if job.state == JobState.FAILED:
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [
                {
                    "severity": "error",
                    "code": "exception",
                    "diagnostics": "the export failed; start a new one",
                }
            ],
        }
        return Status(500, {}, outcome)
    return Status(202, {"X-Progress": progress(job), "Retry-After": str(retry_after)})
