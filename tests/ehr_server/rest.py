"""FHIR REST semantics over the store: read, search, (conditional) create/update, bundles."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pydantic
from fhir.resources.R4B.bundle import Bundle

from .errors import FhirError
from .interactions import Interaction, Outcome, check_id, etag_version
from .scopes import ResourceScope, permits
from .search import parse_search
from .store import Resource, Store, Txn
from .validation import (
    check_patient_references,
    iter_references,
    relative_reference,
    rewrite_references,
    validate_resource,
)

_ENTRY_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class _Plan:
    """Which resource a write targets and whether it creates, updates or does nothing."""

    interaction: Interaction
    rtype: str
    rid: str
    action: str  # "create" | "update" | "none"
    resource: Resource | None = None


class FhirService:
    """Executes interactions against a :class:`Store` for one FHIR base URL."""

    def __init__(self, store: Store, base_url: str) -> None:
        self.store = store
        self.base_url = base_url

    # -- entry points --------------------------------------------------------------------

    def handle(
        self, request: Interaction, scopes: list[ResourceScope], strict_search: bool = True
    ) -> Outcome:
        """Run one HTTP interaction (a Bundle POSTed to the base included)."""
        if request.method == "POST" and not request.parts:
            return self._bundle(request.resource, scopes)
        _, perm = request.kind()
        self._authorise(request.rtype, perm, scopes)
        with self.store.transaction() as txn:
            return self._execute(txn, request, strict_search)

    # -- dispatch ------------------------------------------------------------------------

    def _authorise(self, rtype: str, perm: str, scopes: list[ResourceScope]) -> None:
        if not permits(scopes, rtype, perm):
            raise FhirError(
                403, f"The access token's scopes do not allow '{perm}' on {rtype}", "forbidden"
            )

    def _execute(self, txn: Txn, request: Interaction, strict_search: bool = True) -> Outcome:
        name, _ = request.kind()
        if name == "search":
            return self._search(txn, request.rtype, request.query, strict_search)
        if name == "read":
            return self._read(txn, request.rtype, request.parts[1])
        if name == "vread":
            return self._vread(txn, request.rtype, request.parts[1], request.parts[3])
        if name == "history":
            return self._history(txn, request.rtype, request.parts[1])
        plan = self._plan(txn, request)
        self._reject_urn_references(plan)
        outcome = self._apply(txn, plan)
        if plan.action != "none" and outcome.body is not None:
            check_patient_references(txn, outcome.body, self.base_url)
        return outcome

    # -- reads ---------------------------------------------------------------------------

    def _read(self, txn: Txn, rtype: str, rid: str) -> Outcome:
        current = txn.read(rtype, rid)
        if current is None:
            raise FhirError(404, f"{rtype}/{rid} is not known", "not-found")
        return self._outcome(200, current)

    def _vread(self, txn: Txn, rtype: str, rid: str, vid: str) -> Outcome:
        for version in txn.versions(rtype, rid):
            if version["meta"]["versionId"] == vid:
                return self._outcome(200, version)
        raise FhirError(404, f"{rtype}/{rid}/_history/{vid} is not known", "not-found")

    def _history(self, txn: Txn, rtype: str, rid: str) -> Outcome:
        versions = txn.versions(rtype, rid)
        if not versions:
            raise FhirError(404, f"{rtype}/{rid} is not known", "not-found")
        entries = [
            {
                "fullUrl": f"{self.base_url}/{rtype}/{rid}",
                "resource": copy.deepcopy(v),
                "request": {
                    "method": "POST" if i == 0 else "PUT",
                    "url": rtype if i == 0 else f"{rtype}/{rid}",
                },
                "response": {"status": "201 Created" if i == 0 else "200 OK"},
            }
            for i, v in reversed(list(enumerate(versions)))
        ]
        bundle = {"resourceType": "Bundle", "type": "history", "total": len(entries)}
        return Outcome(200, {**bundle, "entry": entries})

    def find(self, txn: Txn, rtype: str, query: list[tuple[str, str]]) -> list[Resource]:
        """Current resources matching ``query`` (strict parameters)."""
        search = parse_search(query, self.base_url)
        exact = [
            v.partition("|")[2] if "|" in v else v
            for k, v in query
            if k == "identifier" and "," not in v
        ]
        if exact and exact[0]:
            # Conditional creates look up one identifier: read its candidates, not every resource.
            return search.run(txn.with_identifier(rtype, exact[0]))
        return search.run(txn.all(rtype))

    def _search(self, txn: Txn, rtype: str, query: list[tuple[str, str]], strict: bool) -> Outcome:
        search = parse_search(query, self.base_url, strict)
        found = search.run(txn.all(rtype))
        page = found[search.offset : search.offset + search.count]
        base_params = [*search.params, ("_count", str(search.count))]
        if search.descending:
            base_params.append(("_sort", "-_lastUpdated"))

        def link(relation: str, offset: int) -> dict[str, str]:
            params = urlencode([*base_params, ("_offset", str(offset))])
            return {"relation": relation, "url": f"{self.base_url}/{rtype}?{params}"}

        links = [link("self", search.offset)]
        if search.count and search.offset + search.count < len(found):
            links.append(link("next", search.offset + search.count))
        if search.offset > 0:
            links.append(link("previous", max(0, search.offset - search.count)))
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(found),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{self.base_url}/{rtype}/{r['id']}",
                    "resource": copy.deepcopy(r),
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        if not bundle["entry"]:
            del bundle["entry"]
        return Outcome(200, bundle)

    # -- writes --------------------------------------------------------------------------

    def _plan(self, txn: Txn, request: Interaction) -> _Plan:
        """Resolve the target of a create/update (conditional matches included)."""
        rtype = request.rtype
        resource = request.resource
        if not isinstance(resource, dict):
            raise FhirError(400, f"{request.method} needs a {rtype} resource body", "invalid")
        resource = copy.deepcopy(resource)
        if request.method == "POST":
            if request.if_none_exist is not None:
                query = parse_qsl(request.if_none_exist, keep_blank_values=True)
                if not query:
                    raise FhirError(400, "If-None-Exist has no search criteria", "invalid")
                matches = self.find(txn, rtype, query)
                if len(matches) > 1:
                    raise FhirError(
                        412, f"If-None-Exist matched {len(matches)} {rtype} resources", "multiple"
                    )
                if matches:
                    return _Plan(request, rtype, matches[0]["id"], "none", matches[0])
            return _Plan(request, rtype, txn.new_id(), "create", resource)
        body_id = resource.get("id")
        if len(request.parts) == 2:
            rid = request.parts[1]
            if body_id != rid:
                raise FhirError(
                    400, f"Resource id {body_id!r} must equal the URL id {rid!r}", "invalid"
                )
        else:
            matches = self.find(txn, rtype, request.query)
            if len(matches) > 1:
                raise FhirError(
                    412, f"Conditional update matched {len(matches)} {rtype} resources", "multiple"
                )
            if matches and body_id is not None and body_id != matches[0]["id"]:
                raise FhirError(400, "Resource id differs from the matched resource", "invalid")
            rid = matches[0]["id"] if matches else body_id or txn.new_id()
            check_id(rid)
        action = "update" if txn.read(rtype, rid) is not None else "create"
        return _Plan(request, rtype, rid, action, resource)

    def _apply(self, txn: Txn, plan: _Plan) -> Outcome:
        """Validate and stage the write described by ``plan``."""
        if plan.action == "none":
            assert plan.resource is not None
            return self._outcome(200, plan.resource)
        resource = dict(plan.resource or {})
        resource.pop("id", None)
        validate_resource(plan.rtype, {**resource, "id": plan.rid})
        if plan.interaction.if_match is not None:
            wanted = etag_version(plan.interaction.if_match)
            current = txn.read(plan.rtype, plan.rid)
            if current is None or current["meta"]["versionId"] != wanted:
                raise FhirError(412, f"If-Match {plan.interaction.if_match} is stale", "conflict")
        stored = txn.write(plan.rtype, plan.rid, resource)
        return self._outcome(201 if plan.action == "create" else 200, stored)

    def _outcome(self, status: int, resource: Resource) -> Outcome:
        rtype, rid = resource["resourceType"], resource["id"]
        version = resource["meta"]["versionId"]
        return Outcome(
            status,
            copy.deepcopy(resource),
            location=f"{self.base_url}/{rtype}/{rid}/_history/{version}",
            etag=f'W/"{version}"',
            last_modified=resource["meta"]["lastUpdated"],
        )

    def _reject_urn_references(self, plan: _Plan) -> None:
        for path, ref in iter_references(plan.resource or {}, plan.rtype):
            if ref["reference"].startswith("urn:"):
                raise FhirError(
                    400, f"{path}: unresolved reference {ref['reference']!r}", "invalid", [path]
                )

    # -- bundles -------------------------------------------------------------------------

    def _bundle(self, body: Any, scopes: list[ResourceScope]) -> Outcome:
        entries = _bundle_entries(body)
        if body["type"] == "batch":
            return self._batch(entries, scopes)
        requests = []
        for index, entry in enumerate(entries):
            try:
                request = self._entry_interaction(entry)
                self._authorise(request.rtype, request.kind()[1], scopes)
            except FhirError as exc:
                raise _at_entry(exc, index) from None
            requests.append(request)
        with self.store.transaction() as txn:
            results = self._transaction(txn, requests)
        response = [{**_entry_body(r), "response": r.entry_response()} for r in results]
        bundle = {"resourceType": "Bundle", "type": "transaction-response", "entry": response}
        return Outcome(200, bundle)

    def _entry_interaction(self, entry: dict[str, Any]) -> Interaction:
        request = entry["request"]
        interaction = Interaction.from_url(
            request["method"],
            request["url"],
            self.base_url,
            resource=entry.get("resource"),
            if_none_exist=request.get("ifNoneExist"),
            if_match=request.get("ifMatch"),
            full_url=entry.get("fullUrl"),
        )
        interaction.kind()
        return interaction

    def _batch(self, entries: list[dict[str, Any]], scopes: list[ResourceScope]) -> Outcome:
        response = []
        for entry in entries:
            try:
                request = self._entry_interaction(entry)
                self._authorise(request.rtype, request.kind()[1], scopes)
                with self.store.transaction() as txn:
                    result = self._execute(txn, request)
                response.append({**_entry_body(result), "response": result.entry_response()})
            except FhirError as exc:
                failed = Outcome(exc.status).entry_response()
                response.append({"response": {**failed, "outcome": exc.outcome()}})
        bundle = {"resourceType": "Bundle", "type": "batch-response", "entry": response}
        return Outcome(200, bundle)

    def _transaction(self, txn: Txn, requests: list[Interaction]) -> list[Outcome]:
        order = sorted(range(len(requests)), key=lambda i: _ENTRY_ORDER[requests[i].method])
        writes = [i for i in order if requests[i].method in ("POST", "PUT")]
        plans: dict[int, _Plan] = {}
        for index in writes:
            try:
                plans[index] = self._plan(txn, requests[index])
            except FhirError as exc:
                raise _at_entry(exc, index) from None
        self._check_distinct_targets(plans)
        mapping = {
            requests[i].full_url: f"{p.rtype}/{p.rid}"
            for i, p in plans.items()
            if requests[i].full_url
        }
        results: dict[int, Outcome] = {}
        for index in order:
            try:
                if index in plans:
                    plan = plans[index]
                    if plan.resource is not None and plan.action != "none":
                        rewrite_references(plan.resource, lambda r: self._resolve(txn, r, mapping))
                        self._reject_urn_references(plan)
                    results[index] = self._apply(txn, plan)
                else:
                    results[index] = self._execute(txn, requests[index])
            except FhirError as exc:
                raise _at_entry(exc, index) from None
        for index, plan in plans.items():
            body = results[index].body
            if plan.action != "none" and body is not None:
                try:
                    check_patient_references(txn, body, self.base_url)
                except FhirError as exc:
                    raise _at_entry(exc, index) from None
        return [results[i] for i in range(len(requests))]

    def _resolve(self, txn: Txn, reference: str, mapping: dict[str | None, str]) -> str:
        """Rewrite ``urn:uuid:`` references to assigned ids and conditional references."""
        if reference in mapping:
            return mapping[reference]
        local = relative_reference(reference, self.base_url)
        rtype, question, query = local.partition("?")
        if not question or "/" in rtype:
            return reference
        matches = self.find(txn, rtype, parse_qsl(query, keep_blank_values=True))
        if len(matches) != 1:
            raise FhirError(
                412, f"Conditional reference {reference!r} matched {len(matches)}", "multiple"
            )
        return f"{rtype}/{matches[0]['id']}"

    @staticmethod
    def _check_distinct_targets(plans: dict[int, _Plan]) -> None:
        seen: dict[tuple[str, str], int] = {}
        for index, plan in plans.items():
            key = (plan.rtype, plan.rid)
            if key in seen and plan.action != "none":
                raise _at_entry(
                    FhirError(400, f"{key[0]}/{key[1]} is the target of two entries", "invalid"),
                    index,
                )
            seen[key] = index


def _bundle_entries(body: Any) -> list[dict[str, Any]]:
    """Validate a transaction/batch Bundle's shape and return its entries."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise FhirError(400, "POST to the base URL needs a Bundle", "invalid")
    if body.get("type") not in ("transaction", "batch"):
        raise FhirError(
            400,
            f"Bundle.type must be transaction or batch, not {body.get('type')!r}",
            "invalid",
            ["Bundle.type"],
        )
    entries = body.get("entry") or []
    shell = {**body, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in entries]}
    try:
        Bundle.model_validate(shell)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(["Bundle", *(str(p) for p in first["loc"])])
        raise FhirError(400, f"{path}: {first['msg']}", "structure", [path]) from None
    for index, entry in enumerate(entries):
        if "request" not in entry:
            raise FhirError(400, f"Bundle.entry[{index}].request is required", "required")
    return list(entries)


def _entry_body(result: Outcome) -> dict[str, Any]:
    """``fullUrl`` and ``resource`` of a response entry."""
    if result.body is None:
        return {}
    if result.location is None:
        return {"resource": result.body}
    return {"fullUrl": result.location.split("/_history/")[0], "resource": result.body}


def _at_entry(exc: FhirError, index: int) -> FhirError:
    """The same error, located at ``Bundle.entry[index]``."""
    return FhirError(
        exc.status,
        f"Bundle.entry[{index}]: {exc.diagnostics}",
        exc.code,
        [f"Bundle.entry[{index}]", *exc.expression],
        exc.headers,
    )
