"""Shape of batch and transaction Bundles, checked before any entry is processed.

A Bundle is refused whole when its own shape is wrong (not a Bundle, unknown type, ``entry`` not
an array, too many entries). An entry of the wrong shape is refused on its own: in a batch it
gets its own 4xx response, in a transaction it fails the whole Bundle before anything is done.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from careloop.services.common.bounds import Str64, Str300, Str2000
from careloop.services.common.errors import ApiError, Issue, json_path
from careloop.services.fhirapi.inputs import check_json

URN_UUID = "urn:uuid:"


class EntryRequest(BaseModel):
    """``Bundle.entry.request``: what to do with the entry."""

    model_config = ConfigDict(strict=True, extra="ignore")

    method: Str64
    url: Str2000
    ifNoneExist: Str2000 | None = None


class BundleEntry(BaseModel):
    """One ``Bundle.entry`` careloop can process."""

    model_config = ConfigDict(strict=True, extra="ignore")

    fullUrl: Str300 | None = None
    request: EntryRequest
    resource: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class BundleIn:
    """A Bundle whose own shape is valid; its entries are checked one by one."""

    kind: Literal["batch", "transaction"]
    entries: list[Any]


def parse_bundle(body: Any, max_entries: int) -> BundleIn:
    """The Bundle's type and raw entries; 4xx naming the element when its shape is wrong."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise ApiError.invalid("resourceType", "POST /fhir takes a Bundle")
    check_json({k: v for k, v in body.items() if k != "entry"}, "Bundle")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise ApiError.invalid("Bundle.type", "the Bundle type must be batch or transaction")
    entries = body.get("entry", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ApiError.invalid("Bundle.entry", "entry must be an array")
    if len(entries) > max_entries:
        raise ApiError(
            413,
            [Issue("too-costly", f"a Bundle holds at most {max_entries} entries", "Bundle.entry")],
        )
    return BundleIn(kind, entries)


def parse_entry(entry: Any, index: int) -> BundleEntry:
    """One entry, its JSON bounded and its shape valid; 4xx naming the element otherwise."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise ApiError.invalid(where, "an entry must be an object")
    check_json(entry, where)
    try:
        parsed = BundleEntry.model_validate(entry)
    except ValidationError as exc:
        issues = [
            Issue("invalid", e["msg"], json_path(("Bundle", "entry", index, *e["loc"])))
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise ApiError(422, issues) from exc
    if parsed.request.method != "POST":
        raise ApiError.invalid(f"{where}.request.method", "only POST entries are supported")
    return parsed


def references_in(value: Any) -> set[str]:
    """Every ``reference`` string inside ``value`` (walked without recursion)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            reference = item.get("reference")
            if isinstance(reference, str):
                found.add(reference)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def creation_order(entries: list[BundleEntry], first_types: tuple[str, ...] = ()) -> list[int]:
    """Entry indexes so each entry comes after the ``urn:uuid`` entries it references.

    Among entries free to go, those whose request URL names one of ``first_types`` go first,
    then by position. Duplicate ``urn:uuid`` fullUrls or a circular reference (an entry that
    references itself counts) answer 422 naming an entry.
    """
    by_url: dict[str, int] = {}
    for index, entry in enumerate(entries):
        url = entry.fullUrl
        if url is None or not url.startswith(URN_UUID):
            continue
        if url in by_url:
            raise ApiError.invalid(f"Bundle.entry[{index}].fullUrl", "fullUrl is not unique")
        by_url[url] = index
    needs = [{by_url[r] for r in references_in(entry.resource) if r in by_url} for entry in entries]
    for index, deps in enumerate(needs):
        if index in deps:
            raise ApiError.invalid(
                f"Bundle.entry[{index}].resource", "the entry references its own fullUrl"
            )
    dependents: list[list[int]] = [[] for _ in entries]
    for index, deps in enumerate(needs):
        for dep in deps:
            dependents[dep].append(index)
    missing = [len(deps) for deps in needs]

    def rank(i: int) -> tuple[bool, int]:
        return entries[i].request.url.split("?")[0] not in first_types, i

    ready = [rank(i) for i, count in enumerate(missing) if count == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        _, index = heapq.heappop(ready)
        order.append(index)
        for dependent in dependents[index]:
            missing[dependent] -= 1
            if missing[dependent] == 0:
                heapq.heappush(ready, rank(dependent))
    if len(order) < len(entries):
        cycle = min(set(range(len(entries))) - set(order))
        raise ApiError.invalid(
            f"Bundle.entry[{cycle}].resource",
            "the entries reference each other in a circle through urn:uuid fullUrls",
        )
    return order
