"""FHIR search: parsing the supported parameters and matching resources against them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import FhirError
from .store import Resource, parse_instant
from .validation import relative_reference

DEFAULT_COUNT = 50
MAX_COUNT = 1000
_RESULT_PARAMS = frozenset({"_count", "_offset", "_sort", "_format", "_total"})
REFERENCE_PARAMS = {
    "patient": ("subject", "patient", "for", "beneficiary"),
    "subject": ("subject",),
    "encounter": ("encounter", "context"),
}
TOKEN_PARAMS = {"identifier": "identifier", "code": "code", "category": "category"}
_COMPARATORS: dict[str, Callable[[datetime, datetime], bool]] = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}

Predicate = Callable[[Resource], bool]


@dataclass
class Search:
    """A parsed search: AND of predicates, plus paging and sort."""

    predicates: list[Predicate] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    descending: bool = False

    def run(self, resources: list[Resource]) -> list[Resource]:
        """The matches, sorted by ``meta.lastUpdated``."""
        found = [r for r in resources if all(p(r) for p in self.predicates)]
        found.sort(key=lambda r: r["meta"]["lastUpdated"], reverse=self.descending)
        return found


def parse_search(params: list[tuple[str, str]], base_url: str, strict: bool = True) -> Search:
    """Parse query parameters; unknown parameters are a 400 unless ``strict`` is False."""
    search = Search()
    for name, value in params:
        if name in _RESULT_PARAMS:
            _parse_result_param(search, name, value)
            continue
        predicate = _predicate(name, value, base_url)
        if predicate is None:
            if strict:
                raise FhirError(400, f"Unknown search parameter {name!r}", "not-supported")
            continue
        search.predicates.append(predicate)
        search.params.append((name, value))
    return search


def _parse_result_param(search: Search, name: str, value: str) -> None:
    if name in ("_count", "_offset"):
        if not value.isdigit():
            raise FhirError(400, f"{name} must be a non-negative integer", "invalid")
        if name == "_count":
            search.count = min(int(value), MAX_COUNT)
        else:
            search.offset = int(value)
    elif name == "_sort":
        if value not in ("_lastUpdated", "-_lastUpdated"):
            raise FhirError(400, f"Unsupported _sort {value!r}", "not-supported")
        search.descending = value.startswith("-")


def _predicate(name: str, value: str, base_url: str) -> Predicate | None:
    alternatives = [v for v in value.split(",") if v]
    if not alternatives:
        raise FhirError(400, f"Empty value for search parameter {name!r}", "invalid")
    if name == "_id":
        return lambda r: r.get("id") in alternatives
    if name == "_lastUpdated":
        return _date_predicate(value)
    if name == "status":
        return lambda r: r.get("status") in alternatives
    if name in TOKEN_PARAMS:
        key = TOKEN_PARAMS[name]
        return lambda r: any(_token_matches(r.get(key), alt) for alt in alternatives)
    if name in REFERENCE_PARAMS:
        paths = REFERENCE_PARAMS[name]
        default_type = {"patient": "Patient", "encounter": "Encounter"}.get(name)
        wanted = [_normalise_reference(a, base_url, default_type) for a in alternatives]
        return lambda r: any(
            _reference_matches(r.get(p), w, base_url) for p in paths for w in wanted
        )
    return None


def _date_predicate(value: str) -> Predicate:
    prefix, text = (value[:2], value[2:]) if value[:2] in _COMPARATORS else ("eq", value)
    try:
        moment = parse_instant(text)
    except ValueError:
        raise FhirError(400, f"Invalid _lastUpdated value {value!r}", "invalid") from None
    compare = _COMPARATORS[prefix]
    return lambda r: compare(parse_instant(r["meta"]["lastUpdated"]), moment)


def _codings(node: Any) -> list[dict[str, Any]]:
    """Identifiers/Codings under an Identifier, CodeableConcept or a list of them."""
    items = node if isinstance(node, list) else [node] if node else []
    found: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            found.extend(item.get("coding") or [item])
    return found


def _token_matches(node: Any, token: str) -> bool:
    system, bar, code = token.partition("|")
    if not bar:
        system, code = "", token
    for item in _codings(node):
        item_code = item.get("value", item.get("code"))
        if bar and system and item.get("system") != system:
            continue
        if bar and not system and item.get("system"):
            continue
        if not code or item_code == code:
            return True
    return False


def _normalise_reference(value: str, base_url: str, default_type: str | None) -> str:
    value = relative_reference(value, base_url)
    if "/" not in value and default_type:
        return f"{default_type}/{value}"
    return value


def _reference_matches(node: Any, wanted: str, base_url: str) -> bool:
    items = node if isinstance(node, list) else [node] if node else []
    for item in items:
        ref = item.get("reference") if isinstance(item, dict) else None
        if not isinstance(ref, str):
            continue
        ref = relative_reference(ref, base_url)
        if ref == wanted or ("/" not in wanted and ref.split("/")[-1] == wanted):
            return True
    return False
