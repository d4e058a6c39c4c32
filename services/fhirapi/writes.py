"""FHIR-native writes: Observation, QuestionnaireResponse and batch/transaction Bundles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlmodel import Session, col
from sqlmodel import select as sqlmodel_select

from careloop.fhir.alerts import ALERT_STATUS
from careloop.fhir.identifiers import business_identifier, identifier_kind
from careloop.fhir.inbound import parse_questionnaire_response
from careloop.fhir.provenance import map_provenance
from careloop.fhir.validation import FhirValidationError, validate_resource
from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import acknowledge, resolve
from careloop.services.alerts.vocabulary import AlertStatus
from careloop.services.auth.tokens import Principal
from careloop.services.common.errors import ApiError, Issue
from careloop.services.db import utcnow
from careloop.services.deps import check_scope
from careloop.services.fhirapi.bundles import BundleEntry, creation_order, parse_bundle, parse_entry
from careloop.services.fhirapi.inputs import (
    check_json,
    if_match_version,
    if_none_exist_identifier,
)
from careloop.services.outbox.record import reading_created
from careloop.services.patients.models import PatientIdentifier
from careloop.services.reports.schemas import PatientRef, SymptomReportIn
from careloop.services.reports.service import ingest_reports
from careloop.services.store.indexing import index_problems
from careloop.services.store.repository import ResourceStore, StoredResource, VersionConflict
from careloop.services.unit_of_work import savepoint

_P = PatientIdentifier.__table__  # type: ignore[attr-defined]
MANAGED = ("CarePlan", "Goal", "CareTeam", "Practitioner", "PractitionerRole", "Consent")
"""Types clinicians' systems write as they are (care plans, goals, care teams, people)."""
WRITABLE = ("QuestionnaireResponse", "Observation", *MANAGED)
_ACTOR_LENGTH = 200
"""Who acknowledged or resolved an alert (``Alert.acknowledged_by``)."""
_PATIENT_ELEMENT = {
    "CarePlan": "subject",
    "Goal": "subject",
    "CareTeam": "subject",
    "Consent": "patient",
}


@dataclass(frozen=True)
class WriteResult:
    """A stored resource and whether this request created it (False: it already existed)."""

    stored: StoredResource
    created: bool


def fhir_invalid(exc: FhirValidationError) -> ApiError:
    """An invalid resource as a 422 whose issues name the elements."""
    return ApiError(422, [Issue("invalid", i.message, i.expression) for i in exc.issues])


def _validated(resource: Any, rtype: str) -> dict[str, Any]:
    """``resource`` as valid FHIR of ``rtype`` whose indexed values the store can hold."""
    if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
        raise ApiError.invalid("resourceType", f"the body must be a {rtype} resource")
    check_json(resource, rtype)
    try:
        valid = validate_resource(resource)
    except FhirValidationError as exc:
        raise fhir_invalid(exc) from exc
    problems = index_problems(valid)
    if problems:
        raise ApiError(422, [Issue("invalid", message, where) for where, message in problems])
    return valid


def _patient_id(session: Session, tenant_id: str, reference: str | None, where: str) -> str:
    if not reference or not reference.startswith("Patient/"):
        raise ApiError.invalid(where, "must reference a Patient (Patient/{id})")
    patient_id = reference.removeprefix("Patient/")
    if ResourceStore(session, tenant_id).read("Patient", patient_id) is None:
        raise ApiError.invalid(where, f"{reference} is not known")
    return patient_id


def _conditional_matches(
    store: ResourceStore, rtype: str, if_none_exist: str | None, resource: dict[str, Any]
) -> list[StoredResource]:
    criteria: list[tuple[str, str]] = []
    condition = if_none_exist_identifier(if_none_exist)
    if condition is not None:
        criteria.append(condition)
    else:
        criteria.extend(
            (i.get("system", ""), i["value"])
            for i in resource.get("identifier", [])
            if i.get("system") and i.get("value")
        )
    found: dict[str, StoredResource] = {}
    for system, code in criteria:
        for match in store.find_by_token(rtype, "identifier", system, code):
            found[match.id] = match
    return list(found.values())


def create_observation(
    session: Session, principal: Principal, body: Any, if_none_exist: str | None
) -> WriteResult:
    """Store a posted Observation once (conditional create on its identifiers)."""
    resource = _validated(body, "Observation")
    subject = (resource.get("subject") or {}).get("reference")
    patient_id = _patient_id(session, principal.tenant_id, subject, "Observation.subject")
    store = ResourceStore(session, principal.tenant_id)
    matches = _conditional_matches(store, "Observation", if_none_exist, resource)
    if len(matches) > 1:
        raise ApiError(412, [Issue("multiple-matches", "more than one Observation matches")])
    if matches:
        return WriteResult(matches[0], False)
    resource["id"] = str(uuid.uuid4())
    resource.pop("meta", None)
    resource.setdefault("identifier", []).append(business_identifier("observation", resource["id"]))
    resource = validate_resource(resource)
    provenance = map_provenance(
        resource["id"], [f"Observation/{resource['id']}"], utcnow(), principal.client_id, patient_id
    )
    stored = store.create_many([resource, provenance])
    reading_created(session, principal.tenant_id, resource)
    return WriteResult(stored[0], True)


def _identifier_of(session: Session, tenant_id: str, patient_id: str) -> tuple[str, str]:
    row = session.execute(
        select(_P.c.system, _P.c.value)
        .where(_P.c.tenant_id == tenant_id, _P.c.patient_id == patient_id)
        .limit(1)
    ).first()
    if row is None:
        raise ApiError.invalid("QuestionnaireResponse.subject", "the patient has no identifier")
    return row.system, row.value


def create_questionnaire_response(session: Session, principal: Principal, body: Any) -> WriteResult:
    """Map a posted PHQ-9 / PHQ-2 / GAD-7 QuestionnaireResponse as a symptom report."""
    resource = _validated(body, "QuestionnaireResponse")
    check_scope(principal, "Observation", "c")
    try:
        parsed = parse_questionnaire_response(resource)
    except FhirValidationError as exc:
        raise fhir_invalid(exc) from exc
    patient_id = _patient_id(
        session, principal.tenant_id, parsed.patient_reference, "QuestionnaireResponse.subject"
    )
    system, value = _identifier_of(session, principal.tenant_id, patient_id)
    app_id = next(
        (f"{i.get('system', '')}|{i['value']}" for i in _identifiers(resource) if i.get("value")),
        None,
    )
    if app_id is not None and len(app_id) > 200:
        # Cut short, two long identifiers would collide and the second report be dropped.
        raise ApiError.invalid(
            "QuestionnaireResponse.identifier", "system|value must be at most 200 characters"
        )
    try:
        report = SymptomReportIn(
            patient=PatientRef(system=system, value=value),
            instrument=parsed.instrument,
            effective=parsed.authored,
            answers=list(parsed.answers),
            difficulty=parsed.difficulty,
            app_report_id=app_id,
        )
    except ValueError as exc:
        raise ApiError.invalid("QuestionnaireResponse", str(exc)) from exc
    outcome = ingest_reports(session, principal, [report])[0]
    if outcome.issues:
        issues = [
            Issue(i.code, i.diagnostics, _qr_expression(i.expression)) for i in outcome.issues
        ]
        raise ApiError(outcome.status, issues)
    qr_ref = next(r for r in outcome.resources if r.startswith("QuestionnaireResponse/"))
    stored = ResourceStore(session, principal.tenant_id).read(*qr_ref.split("/", 1))
    assert stored is not None
    return WriteResult(stored, outcome.status == 201)


def _identifiers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    ident = resource.get("identifier")
    if isinstance(ident, dict):
        return [ident]
    return list(ident or [])


def _qr_expression(field: str | None) -> str:
    mapping = {
        "effective": "QuestionnaireResponse.authored",
        "app_report_id": "QuestionnaireResponse.identifier",
    }
    return mapping.get(field or "", "QuestionnaireResponse.item")


def _check_patient(
    session: Session, principal: Principal, rtype: str, resource: dict[str, Any]
) -> str | None:
    element = _PATIENT_ELEMENT.get(rtype)
    if element is None:
        return None
    reference = (resource.get(element) or {}).get("reference")
    return _patient_id(session, principal.tenant_id, reference, f"{rtype}.{element}")


def create_managed(
    session: Session, principal: Principal, rtype: str, body: Any, if_none_exist: str | None
) -> WriteResult:
    """Store a CarePlan, Goal, CareTeam, Practitioner or PractitionerRole once."""
    resource = _validated(body, rtype)
    patient_id = _check_patient(session, principal, rtype, resource)
    store = ResourceStore(session, principal.tenant_id)
    matches = _conditional_matches(store, rtype, if_none_exist, resource)
    if len(matches) > 1:
        raise ApiError(412, [Issue("multiple-matches", f"more than one {rtype} matches")])
    if matches:
        return WriteResult(matches[0], False)
    resource["id"] = str(uuid.uuid4())
    resource.pop("meta", None)
    resource.setdefault("identifier", []).append(
        business_identifier(identifier_kind(rtype), resource["id"])
    )
    provenance = (
        map_provenance(
            resource["id"],
            [f"{rtype}/{resource['id']}"],
            utcnow(),
            principal.client_id,
            patient_id or "",
        )
        if patient_id
        else None
    )
    stored = store.create_many([resource, *([provenance] if provenance else [])])
    return WriteResult(stored[0], True)


def update_managed(
    session: Session,
    principal: Principal,
    rtype: str,
    rid: str,
    body: Any,
    if_match: str | None,
) -> StoredResource:
    """Replace a managed resource with a new version (optimistic locking with If-Match)."""
    check_scope(principal, rtype, "u")
    if rtype not in MANAGED:
        raise ApiError(405, [Issue("not-supported", f"{rtype} cannot be updated here")])
    resource = _validated(body, rtype)
    if resource.get("id") != rid:
        raise ApiError.invalid(f"{rtype}.id", "the resource id must match the URL", 400)
    _check_patient(session, principal, rtype, resource)
    expected = if_match_version(if_match)
    store = ResourceStore(session, principal.tenant_id)
    current = store.read(rtype, rid)
    if current is None:
        raise ApiError.not_found(f"{rtype}/{rid}")
    kept = [
        i
        for i in current.as_dict().get("identifier", [])
        if str(i.get("system", "")).startswith("https://careloop.io/")
    ]
    resource["identifier"] = [*[i for i in resource.get("identifier", []) if i not in kept], *kept]
    resource.pop("meta", None)
    try:
        return store.update(resource, expected)
    except VersionConflict as exc:
        raise ApiError(412, [Issue("conflict", str(exc), "If-Match")]) from exc


def create_resource(
    session: Session, principal: Principal, rtype: str, body: Any, if_none_exist: str | None
) -> WriteResult:
    """Create one resource of a writable type (scopes checked)."""
    check_scope(principal, rtype, "c")
    if rtype == "Observation":
        return create_observation(session, principal, body, if_none_exist)
    if rtype == "QuestionnaireResponse":
        return create_questionnaire_response(session, principal, body)
    if rtype in MANAGED:
        return create_managed(session, principal, rtype, body, if_none_exist)
    raise ApiError(405, [Issue("not-supported", f"{rtype} cannot be created here")])


def _rewrite(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v, refs) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in refs:
            out["reference"] = refs[out["reference"]]
        return out
    if isinstance(value, list):
        return [_rewrite(v, refs) for v in value]
    return value


def _entry_type(entry: BundleEntry, index: int) -> str:
    rtype = entry.request.url.split("?")[0]
    if rtype not in WRITABLE:
        raise ApiError.invalid(
            f"Bundle.entry[{index}].request.url", "only Observation, QuestionnaireResponse and "
            "care data (CarePlan, Goal, CareTeam, Practitioner, PractitionerRole, Consent) "
            "are created here",
        )  # fmt: skip
    return rtype


def _entry_response(result: WriteResult, fhir_base: str) -> dict[str, Any]:
    s = result.stored
    return {
        "response": {
            "status": "201 Created" if result.created else "200 OK",
            "location": f"{fhir_base}/{s.resource_type}/{s.id}/_history/{s.version_id}",
            "etag": s.etag,
            "lastModified": s.last_updated.isoformat().replace("+00:00", "Z"),
        }
    }


def _in_entry(issue: Issue, index: int) -> Issue:
    path = issue.expression or ""
    if path.startswith("Bundle."):
        return issue
    if path == "If-None-Exist":
        where = f"Bundle.entry[{index}].request.ifNoneExist"
        return Issue(issue.code, issue.diagnostics, where, issue.severity)
    head, dot, rest = path.partition(".")
    if dot and head[:1].isupper():
        path = rest
    where = f"Bundle.entry[{index}].resource" + (f".{path}" if path else "")
    return Issue(issue.code, issue.diagnostics, where, issue.severity)


def _entry_error(error: ApiError, index: int) -> dict[str, Any]:
    issues = [_in_entry(i, index).as_fhir() for i in error.issues]
    return {
        "response": {
            "status": str(error.status),
            "outcome": {"resourceType": "OperationOutcome", "issue": issues},
        }
    }


def _in_bundle(error: ApiError, index: int) -> ApiError:
    return ApiError(error.status, [_in_entry(i, index) for i in error.issues], error.headers)


def process_bundle(
    session: Session, principal: Principal, body: Any, fhir_base: str, max_entries: int
) -> dict[str, Any]:
    """Process a batch (each entry on its own) or transaction (all or nothing) Bundle.

    A transaction may reference its own entries by ``urn:uuid`` fullUrls: an entry is created
    after those it references (QuestionnaireResponses first where free), and a circle of
    references is refused. Every entry's shape is checked before any is processed.
    """
    bundle = parse_bundle(body, max_entries)
    if bundle.kind == "batch":
        responses: list[dict[str, Any] | None] = []
        for index, raw in enumerate(bundle.entries):
            try:
                entry = parse_entry(raw, index)
                rtype = _entry_type(entry, index)
                with savepoint(session):
                    result = create_resource(
                        session, principal, rtype, entry.resource, entry.request.ifNoneExist
                    )
                responses.append(_entry_response(result, fhir_base))
            except ApiError as error:
                responses.append(_entry_error(error, index))
        return {"resourceType": "Bundle", "type": "batch-response", "entry": responses}
    entries: list[BundleEntry] = []
    types: list[str] = []
    for index, raw in enumerate(bundle.entries):
        try:
            entries.append(parse_entry(raw, index))
            types.append(_entry_type(entries[-1], index))
        except ApiError as error:
            raise _in_bundle(error, index) from error
    order = creation_order(entries, ("QuestionnaireResponse",))
    refs: dict[str, str] = {}
    done: list[dict[str, Any] | None] = [None] * len(entries)
    for index in order:
        entry = entries[index]
        try:
            result = create_resource(
                session,
                principal,
                types[index],
                _rewrite(entry.resource, refs),
                entry.request.ifNoneExist,
            )
        except ApiError as error:
            raise _in_bundle(error, index) from error
        if entry.fullUrl is not None and entry.fullUrl.startswith("urn:uuid:"):
            refs[entry.fullUrl] = result.stored.reference
        done[index] = _entry_response(result, fhir_base)
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": done}


def dumps(value: dict[str, Any]) -> bytes:
    """Serialise FHIR JSON."""
    return orjson.dumps(value)


def update_task_status(
    session: Session, principal: Principal, rid: str, body: Any
) -> StoredResource:
    """A clinician's system moved an alert Task: accepted acknowledges, completed resolves."""
    check_scope(principal, "Task", "u")
    resource = _validated(body, "Task")
    alert = session.exec(
        sqlmodel_select(Alert).where(
            col(Alert.task_id) == rid, col(Alert.tenant_id) == principal.tenant_id
        )
    ).first()
    if alert is None:
        raise ApiError.not_found(f"Task/{rid}")
    target = ALERT_STATUS.get(str(resource.get("status")))
    if target is None:
        raise ApiError.invalid("Task.status", "careloop Tasks move to accepted or completed")
    actor = (resource.get("owner") or {}).get("reference") or f"client:{principal.client_id}"
    if len(actor) > _ACTOR_LENGTH:
        raise ApiError.invalid(
            "Task.owner.reference", f"must be at most {_ACTOR_LENGTH} characters"
        )
    agent = f"client:{principal.client_id}"
    if target == AlertStatus.ACKNOWLEDGED:
        acknowledge(session, principal.tenant_id, alert.id, actor, agent=agent)
    elif target == AlertStatus.RESOLVED:
        notes = resource.get("note") or [{}]
        resolve(session, principal.tenant_id, alert.id, actor, notes[-1].get("text"), agent=agent)
    stored = ResourceStore(session, principal.tenant_id).read("Task", rid)
    assert stored is not None
    return stored


def update_resource(
    session: Session,
    principal: Principal,
    rtype: str,
    rid: str,
    body: Any,
    if_match: str | None,
) -> StoredResource:
    """PUT: a managed resource's new version, or an alert Task's status change."""
    if rtype == "Task":
        return update_task_status(session, principal, rid, body)
    return update_managed(session, principal, rtype, rid, body, if_match)
