"""The app API for symptom reports: ``/v1/symptom-reports``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path
from pydantic import TypeAdapter, ValidationError
from sqlmodel import select
from starlette.responses import Response

from careloop.services.auth.tokens import Principal
from careloop.services.common.body import (
    RawBody,
    check_json,
    read_json_body,
    read_json_unchecked,
    validation_issues,
)
from careloop.services.common.errors import ApiError, Issue
from careloop.services.common.idempotency import ApiResult, result_response, run_unit_of_work
from careloop.services.common.openapi import errors, json_body, json_ok, schema_ref
from careloop.services.deps import SessionDep, SettingsDep, check_scope, require
from careloop.services.reports.models import SymptomReport
from careloop.services.reports.schemas import (
    SCORED,
    ReportCreated,
    SymptomReportBatchIn,
    SymptomReportIn,
)
from careloop.services.reports.service import ReportOutcome, ingest_reports

router = APIRouter(
    prefix="/v1/symptom-reports",
    tags=["symptom reports"],
    responses=errors(400, 401, 403, 422),
)
_report = TypeAdapter(SymptomReportIn)
BodyDep = Annotated[RawBody, Depends(read_json_body)]
BatchBodyDep = Annotated[RawBody, Depends(read_json_unchecked)]
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
]
CanCreate = Annotated[Principal, Depends(require("Observation", "c"))]
_CREATED = schema_ref(ReportCreated)
_RESULTS = {
    "type": "object",
    "properties": {"results": {"type": "array", "items": {"type": "object"}}},
}


def _check_questionnaire_scope(principal: Principal, reports: list[SymptomReportIn]) -> None:
    if any(r.instrument in SCORED for r in reports):
        check_scope(principal, "QuestionnaireResponse", "c")


@router.post(
    "",
    status_code=201,
    summary="Accept one symptom report",
    openapi_extra=json_body(SymptomReportIn),
    responses={
        201: json_ok("Accepted: what the report created", _CREATED),
        200: json_ok("Already accepted (a retry): the first answer", _CREATED),
        **errors(409, 413, 415, 503),
    },
)
def create_report(
    body: BodyDep,
    principal: CanCreate,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Map one report to FHIR and store it; a retry gets the first answer back."""
    try:
        report = _report.validate_python(body.data)
    except ValidationError as exc:
        raise ApiError(422, validation_issues(exc)) from exc
    _check_questionnaire_scope(principal, [report])

    def work() -> ApiResult:
        outcome = ingest_reports(session, principal, [report])[0]
        if outcome.issues:
            raise ApiError(outcome.status, outcome.issues)
        location = f"{settings.base_url}/v1/symptom-reports/{outcome.report_id}"
        return ApiResult(outcome.status, orjson.dumps(_public(outcome)), location)

    result = run_unit_of_work(
        session, principal, work, body=body.raw, idempotency_key=idempotency_key
    )
    return result_response(result)


@router.post(
    "/batch",
    summary="Accept up to 1,000 symptom reports, each on its own",
    openapi_extra=json_body(SymptomReportBatchIn),
    responses={
        200: json_ok("Each report's own status (201, 200, 409 or 422) and result", _RESULTS),
        **errors(413, 415, 503),
    },
)
def create_reports_batch(
    body: BatchBodyDep,
    principal: CanCreate,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Accept each valid report; each item gets its own status, and bad items block nothing."""
    items = body.data.get("reports") if isinstance(body.data, dict) else body.data
    if not isinstance(items, list):
        raise ApiError.invalid("reports", 'send {"reports": [...]} or a JSON array')
    if len(items) > settings.max_batch_reports:
        raise ApiError.invalid(
            "reports", f"a batch holds at most {settings.max_batch_reports} reports", 413
        )
    parsed: list[SymptomReportIn | None] = []
    errors: dict[int, ReportOutcome] = {}
    for index, item in enumerate(items):
        try:
            check_json(item, ("reports", index))
            parsed.append(_report.validate_python(item))
        except ApiError as exc:
            parsed.append(None)
            errors[index] = ReportOutcome(422, issues=exc.issues)
        except ValidationError as exc:
            parsed.append(None)
            errors[index] = ReportOutcome(422, issues=validation_issues(exc, ("reports", index)))
    good = [r for r in parsed if r is not None]
    _check_questionnaire_scope(principal, good)

    def work() -> ApiResult:
        outcomes = iter(ingest_reports(session, principal, good))
        results: list[dict[str, Any]] = []
        for index, report in enumerate(parsed):
            outcome = errors[index] if report is None else next(outcomes)
            if report is not None and outcome.issues:
                outcome = replace(outcome, issues=[_in_batch(i, index) for i in outcome.issues])
            results.append({"index": index, **outcome.as_json()})
        return ApiResult(200, orjson.dumps({"results": results}))

    result = run_unit_of_work(
        session, principal, work, body=body.raw, idempotency_key=idempotency_key
    )
    return result_response(result)


@router.get(
    "/{report_id}",
    summary="What one accepted report created",
    responses={200: json_ok("The report", _CREATED), **errors(404)},
)
def get_report(
    report_id: Annotated[str, Path(max_length=64)],
    principal: Annotated[Principal, Depends(require("Observation", "r"))],
    session: SessionDep,
) -> Response:
    """The report's id, patient and the FHIR references it created."""
    row = session.exec(
        select(SymptomReport).where(
            SymptomReport.id == report_id, SymptomReport.tenant_id == principal.tenant_id
        )
    ).first()
    if row is None:
        raise ApiError.not_found(f"symptom report {report_id}")
    outcome = ReportOutcome(200, row.id, f"Patient/{row.patient_id}", row.resources.split())
    return Response(orjson.dumps(_public(outcome)), media_type="application/json")


def _in_batch(issue: Issue, index: int) -> Issue:
    return replace(issue, expression=f"reports[{index}].{issue.expression}")


def _public(outcome: ReportOutcome) -> dict[str, Any]:
    return {"id": outcome.report_id, "patient": outcome.patient, "resources": outcome.resources}
