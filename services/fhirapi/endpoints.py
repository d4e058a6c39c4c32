"""careloop's FHIR R4 REST API under ``/fhir``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Request
from starlette.responses import Response

from careloop.services.audit.endpoints import router as audit_router
from careloop.services.audit.service import record_access
from careloop.services.auth.tokens import Principal
from careloop.services.bulk.endpoints import router as bulk_router
from careloop.services.common.body import RawBody, read_json_unchecked
from careloop.services.common.errors import ApiError, Issue
from careloop.services.common.idempotency import ApiResult, result_response, run_unit_of_work
from careloop.services.deps import PrincipalDep, SessionDep, SettingsDep, check_scope
from careloop.services.fhirapi.capability import capability_statement
from careloop.services.fhirapi.inputs import check_json, resource_id, version_number
from careloop.services.fhirapi.openapi import (
    ANY_RESOURCE,
    BUNDLE,
    CREATABLE,
    FHIR_ID_PATTERN,
    SCHEMAS,
    SEARCH_PARAMETERS,
    SEARCHABLE,
    UPDATABLE,
    FhirJSONResponse,
    request_body,
    responses,
)
from careloop.services.fhirapi.responses import (
    fhir_json_response,
    resource_response,
    searchset,
)
from careloop.services.fhirapi.writes import create_resource, dumps, process_bundle, update_resource
from careloop.services.store.repository import ResourceStore, StoredResource
from careloop.services.store.search import SEARCH_PARAMS, SearchError, parse_search, run_search

router = APIRouter(prefix="/fhir", tags=["FHIR"], default_response_class=FhirJSONResponse)
# Before the generic /{rtype} routes, which would take /fhir/AuditEvent for a stored type.
router.include_router(audit_router)
router.include_router(bulk_router)  # /fhir/Patient/$export, /fhir/Group/{id}/$export likewise


async def read_resource_body(request: Request) -> RawBody:
    """A resource body, its JSON checked with issues named as FHIRPath from its type."""
    body = await read_json_unchecked(request)
    rtype = body.data.get("resourceType") if isinstance(body.data, dict) else None
    check_json(body.data, rtype if isinstance(rtype, str) and rtype.isalpha() else "Resource")
    return body


BodyDep = Annotated[RawBody, Depends(read_resource_body)]
BundleBodyDep = Annotated[RawBody, Depends(read_json_unchecked)]
"""A Bundle's JSON is checked entry by entry (a bad entry of a batch is its own 4xx)."""
# Documented domains of the path parameters; the handlers still check every value themselves
# (an unknown type is a 404, a malformed id or version a 400 naming it).
TypeAny = Annotated[str, Path(json_schema_extra={"enum": list(SEARCHABLE)})]
TypeCreatable = Annotated[str, Path(json_schema_extra={"enum": list(CREATABLE)})]
TypeUpdatable = Annotated[str, Path(json_schema_extra={"enum": list(UPDATABLE)})]
ResourceId = Annotated[str, Path(alias="id", json_schema_extra={"pattern": FHIR_ID_PATTERN})]
"""The resource id, ``{id}`` in the path as FHIR names it."""
VersionId = Annotated[str, Path(json_schema_extra={"pattern": r"^[0-9]{1,10}$"})]
_WRITE_REFUSALS = (400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 503)
"""The statuses a create or update refuses with (an OperationOutcome)."""
_BUNDLE_RESPONSE = {
    200: (
        "batch-response or transaction-response Bundle",
        {"type": "object", "properties": {"resourceType": {"const": "Bundle"}}},
    )
}
_RESOURCE = {200: ("The resource", ANY_RESOURCE)}
_WRITE_BODY = {"anyOf": [SCHEMAS[t] for t in CREATABLE]}
_UPDATE_BODY = {"anyOf": [SCHEMAS[t] for t in UPDATABLE]}


def _known_type(rtype: str) -> None:
    if rtype not in SEARCH_PARAMS:
        raise ApiError(404, [Issue("not-supported", f"careloop does not serve {rtype}")])


@router.get(
    "/metadata",
    summary="CapabilityStatement",
    responses=responses({200: ("The CapabilityStatement", ANY_RESOURCE)}),
)
def metadata(settings: SettingsDep) -> Response:
    """What this FHIR server supports (no token needed, as FHIR requires)."""
    return fhir_json_response(
        capability_statement(settings.fhir_base_url, settings.base_url.rstrip("/") + "/oauth/token")
    )


@router.post(
    "",
    summary="Batch or transaction Bundle",
    openapi_extra=request_body(BUNDLE),
    responses=responses(_BUNDLE_RESPONSE, 400, 401, 403, 409, 412, 413, 415, 422, 503),
)
def bundle(
    body: BundleBodyDep, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Process a batch or transaction Bundle of creates."""

    def work() -> ApiResult:
        return ApiResult(
            200,
            dumps(
                process_bundle(
                    session,
                    principal,
                    body.data,
                    settings.fhir_base_url,
                    settings.max_bundle_entries,
                )
            ),
        )

    result = run_unit_of_work(session, principal, work, body=body.raw)
    return result_response(result, "application/fhir+json")


@router.get(
    "/{rtype}",
    summary="Search",
    openapi_extra=SEARCH_PARAMETERS,
    responses=responses({200: ("A searchset Bundle", ANY_RESOURCE)}, 400, 401, 403, 404),
)
def search(
    rtype: TypeAny,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Search a resource type; pages follow ``next`` links that stay stable as data arrives."""
    _known_type(rtype)
    check_scope(principal, rtype, "s")
    strict = "handling=strict" in request.headers.get("prefer", "").replace(" ", "")
    try:
        query = parse_search(
            principal.tenant_id,
            rtype,
            list(request.query_params.multi_items()),
            settings.default_page_size,
            settings.max_page_size,
            strict,
            cursor_key=settings.secret_key,
        )
        page = run_search(session, principal.tenant_id, query)
    except SearchError as exc:
        raise ApiError(400, [Issue("processing", exc.message, exc.param or "query")]) from exc
    record_access(session, principal, (r.reference for r in page.resources), f"search {rtype}")
    return fhir_json_response(searchset(settings.fhir_base_url, rtype, query.applied, page))


def _read_or_404(stored: StoredResource | None, what: str) -> StoredResource:
    if stored is None:
        raise ApiError.not_found(what)
    return stored


@router.get(
    "/{rtype}/{id}",
    summary="Read",
    responses=responses(_RESOURCE, 304, 400, 401, 403, 404),
)
def read(
    rtype: TypeAny,
    rid: ResourceId,
    principal: PrincipalDep,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The current version, with its ETag (304 when ``If-None-Match`` matches)."""
    _known_type(rtype)
    resource_id(rid)
    check_scope(principal, rtype, "r")
    stored = _read_or_404(
        ResourceStore(session, principal.tenant_id).read(rtype, rid), f"{rtype}/{rid}"
    )
    record_access(session, principal, [stored.reference])
    if if_none_match is not None and if_none_match.strip() == stored.etag:
        return Response(status_code=304, headers={"ETag": stored.etag})
    return resource_response(stored)


@router.get(
    "/{rtype}/{id}/_history/{vid}",
    summary="Version read",
    responses=responses(_RESOURCE, 400, 401, 403, 404),
)
def vread(
    rtype: TypeAny, rid: ResourceId, vid: VersionId, principal: PrincipalDep, session: SessionDep
) -> Response:
    """One version of a resource."""
    _known_type(rtype)
    resource_id(rid)
    version = version_number(vid)
    check_scope(principal, rtype, "r")
    store = ResourceStore(session, principal.tenant_id)
    stored = _read_or_404(store.vread(rtype, rid, version), f"{rtype}/{rid}/_history/{version}")
    record_access(session, principal, [f"{stored.reference}/_history/{version}"])
    return resource_response(stored)


@router.post(
    "/{rtype}",
    summary="Create",
    status_code=201,
    openapi_extra=request_body(_WRITE_BODY),
    responses=responses(
        {
            201: ("Created", ANY_RESOURCE),
            200: ("Already there (conditional create or a retry)", ANY_RESOURCE),
        },
        *_WRITE_REFUSALS,
    ),
)
def create(
    rtype: TypeCreatable,
    body: BodyDep,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    if_none_exist: Annotated[str | None, Header()] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Create an Observation or a scored QuestionnaireResponse (conditional create supported)."""
    _known_type(rtype)
    holder: list[StoredResource] = []

    def work() -> ApiResult:
        result = create_resource(session, principal, rtype, body.data, if_none_exist)
        holder.append(result.stored)
        return ApiResult(201 if result.created else 200, result.stored.content.encode())

    result = run_unit_of_work(
        session, principal, work, body=rtype.encode() + body.raw, idempotency_key=idempotency_key
    )
    if holder:
        return resource_response(holder[-1], result.status, settings.fhir_base_url)
    return Response(result.body, result.status, media_type="application/fhir+json")


@router.put(
    "/{rtype}/{id}",
    summary="Update",
    openapi_extra=request_body(_UPDATE_BODY),
    responses=responses(
        {200: ("The new version", ANY_RESOURCE)},
        *_WRITE_REFUSALS,
    ),
)
def update(
    rtype: TypeUpdatable,
    rid: ResourceId,
    body: BodyDep,
    principal: PrincipalDep,
    session: SessionDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Replace a CarePlan, Goal, CareTeam, Practitioner or PractitionerRole (or a Task's status)."""
    _known_type(rtype)
    resource_id(rid)
    holder: list[StoredResource] = []

    def work() -> ApiResult:
        stored = update_resource(session, principal, rtype, rid, body.data, if_match)
        holder.append(stored)
        return ApiResult(200, stored.content.encode())

    run_unit_of_work(session, principal, work, body=body.raw)
    return resource_response(holder[-1])


__all__ = ["router", "Principal"]
