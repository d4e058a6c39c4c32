"""FHIR Bulk Data ``$export`` (v2.0.0): kick-off, status, cancel and file download under /fhir."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Path, Request
from starlette.responses import Response

from careloop.services.auth.tokens import Principal
from careloop.services.bulk.files import MAX_FILE_NUMBER, read_file, release
from careloop.services.bulk.jobs import Scope, cancel, group_scope, start_export, visible_job
from careloop.services.bulk.models import ExportLevel, JobState
from careloop.services.bulk.openapi import CANCEL, FILE, KICKOFF, KICKOFF_PARAMETERS, STATUS
from careloop.services.bulk.params import EXPORTABLE, check_headers, parse_kickoff
from careloop.services.bulk.status import job_status, status_url
from careloop.services.common.errors import ApiError, Issue, operation_outcome
from careloop.services.consents.policy import tenant_defaults
from careloop.services.deps import PrincipalDep, SessionDep, SettingsDep, check_scope
from careloop.services.fhirapi.inputs import resource_id
from careloop.services.settings import Settings
from careloop.services.unit_of_work import commit

router = APIRouter()
PreferHeader = Annotated[str | None, Header(alias="Prefer")]
AcceptHeader = Annotated[str | None, Header(alias="Accept")]
JobId = Annotated[str, Path(json_schema_extra={"maxLength": 64})]
NDJSON = "application/fhir+ndjson"


def _kick_off(
    request: Request,
    principal: Principal,
    session: SessionDep,
    settings: Settings,
    prefer: str | None,
    accept: str | None,
    level: ExportLevel,
    group_id: str | None = None,
) -> Response:
    lenient = check_headers(prefer, accept)
    kickoff = parse_kickoff(list(request.query_params.multi_items()), principal.grant, lenient)
    if group_id is None:
        scope = Scope(level)
    else:
        check_scope(principal, "Group", "r")
        scope = group_scope(session, principal.tenant_id, resource_id(group_id))
    url = settings.base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    job = start_export(session, settings, principal, scope, kickoff, url)
    commit(session)
    issues = [
        Issue("informational", "the export has started", severity="information"),
        *(
            Issue("not-supported", f"{name} is ignored", name, severity="warning")
            for name in kickoff.ignored
        ),
    ]
    return Response(
        orjson.dumps(operation_outcome(issues)),
        202,
        media_type="application/fhir+json",
        headers={"Content-Location": status_url(settings.fhir_base_url, job.id)},
    )


@router.get(
    "/$export", summary="Bulk export: system", responses=KICKOFF, openapi_extra=KICKOFF_PARAMETERS
)
def export_system(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    prefer: PreferHeader = None,
    accept: AcceptHeader = None,
) -> Response:
    """Kick off a system-level export: every resource the token may read."""
    return _kick_off(request, principal, session, settings, prefer, accept, ExportLevel.SYSTEM)


@router.get(
    "/Patient/$export",
    summary="Bulk export: all patients",
    responses=KICKOFF,
    openapi_extra=KICKOFF_PARAMETERS,
)
def export_patients(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    prefer: PreferHeader = None,
    accept: AcceptHeader = None,
) -> Response:
    """Kick off an export of every patient's resources (and the Patients)."""
    return _kick_off(request, principal, session, settings, prefer, accept, ExportLevel.PATIENT)


@router.get(
    "/Group/{group_id}/$export",
    summary="Bulk export: a Group's members",
    responses=KICKOFF,
    openapi_extra=KICKOFF_PARAMETERS,
)
def export_group(
    group_id: Annotated[str, Path(json_schema_extra={"maxLength": 64})],
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    prefer: PreferHeader = None,
    accept: AcceptHeader = None,
) -> Response:
    """Kick off an export of the resources of a Group's member patients."""
    return _kick_off(
        request, principal, session, settings, prefer, accept, ExportLevel.GROUP, group_id
    )


@router.get("/$export-status/{job_id}", summary="Bulk export: status", responses=STATUS)
def export_status(
    job_id: JobId, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """202 with ``X-Progress`` while running; 200 with the manifest; 500 if it failed."""
    job = visible_job(session, principal, job_id)
    answer = job_status(
        session, job, settings.fhir_base_url, settings.bulk_export_retry_after_seconds
    )
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    media = "application/json" if answer.status == 200 else "application/fhir+json"
    return Response(orjson.dumps(answer.body), answer.status, answer.headers, media_type=media)


@router.delete("/$export-status/{job_id}", summary="Bulk export: cancel", responses=CANCEL)
def export_cancel(job_id: JobId, principal: PrincipalDep, session: SessionDep) -> Response:
    """Cancel the export and delete its files (its status is 404 afterwards)."""
    cancel(session, visible_job(session, principal, job_id))
    commit(session)
    issue = Issue("informational", "the export is cancelled", severity="information")
    return Response(
        orjson.dumps(operation_outcome([issue])), 202, media_type="application/fhir+json"
    )


@router.get(
    "/$export-file/{job_id}/{rtype}/{number}", summary="Bulk export: one file", responses=FILE
)
def export_file(
    job_id: JobId,
    rtype: Annotated[str, Path(json_schema_extra={"maxLength": 64})],
    number: Annotated[str, Path(json_schema_extra={"maxLength": 12})],
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """One NDJSON file of a completed export, without the lines consent no longer permits."""
    job = visible_job(session, principal, job_id)
    if job.state != JobState.COMPLETED or rtype not in EXPORTABLE:
        raise ApiError.not_found("the file")
    if not number.isdigit() or not 0 < int(number) <= MAX_FILE_NUMBER:
        raise ApiError(404, [Issue("not-found", "the file is not known", "number")])
    file = read_file(session, job, rtype, int(number))
    body = release(session, job, file, tenant_defaults(settings.consent_defaults, job.tenant_id))
    commit(session)  # the disclosures are audited before the data leaves
    return Response(body, 200, media_type=NDJSON)
