"""The ``$export`` kick-off request: headers and parameters, every value bounded and checked."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from careloop.services.auth.scopes import Grant
from careloop.services.common.errors import ApiError, Issue
from careloop.services.store.search import SEARCH_PARAMS

EXPORTABLE = tuple(sorted(t for t in SEARCH_PARAMS if t != "AuditEvent"))
"""What an export may hold: every type careloop serves but the audit trail (served apart)."""
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
ACCEPTED_MEDIA = frozenset({"application/fhir+json", "application/json", "application/*", "*/*"})
KNOWN_PARAMS = frozenset({"_outputFormat", "_since", "_type"})
MAX_PARAMS = 20
MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 2048
MAX_HEADER_LENGTH = 1024
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}", re.ASCII)
_INSTANT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+\-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


@dataclass(frozen=True)
class KickOff:
    """A checked kick-off: which types, since when, and the parameters leniency ignored."""

    types: tuple[str, ...]
    since: datetime | None
    ignored: tuple[str, ...] = ()


def _bad(field: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, [Issue("invalid", message, field)])


def _tokens(header: str) -> set[str]:
    return {part.strip().lower().replace(" ", "") for part in header.split(",")}


def check_headers(prefer: str | None, accept: str | None) -> bool:
    """Check ``Prefer`` and ``Accept``; whether ``Prefer`` asks for lenient handling."""
    if prefer is None or len(prefer) > MAX_HEADER_LENGTH or "respond-async" not in _tokens(prefer):
        raise _bad("Prefer", "a bulk export needs the header 'Prefer: respond-async'")
    if accept is not None and accept.strip():
        if len(accept) > MAX_HEADER_LENGTH:
            raise _bad("Accept", "the Accept header is too long")
        media = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
        if not media & ACCEPTED_MEDIA:
            raise _bad("Accept", "a kick-off answers application/fhir+json only", 406)
    return "handling=lenient" in _tokens(prefer)


def _name(name: str) -> str:
    """``name`` when it is safe to echo in an error; else a placeholder."""
    return name if _SAFE_NAME.fullmatch(name) else "query"


def parse_instant(text: str) -> datetime:
    """A FHIR instant (seconds and a zone required); ValueError if it is not one."""
    if not _INSTANT.fullmatch(text):
        raise ValueError("not a FHIR instant")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except OverflowError:  # a zone pushing year 1 or 9999 out of range
        raise ValueError("not a FHIR instant") from None


def _types(values: Sequence[str], grant: Grant) -> tuple[str, ...]:
    if not values:
        allowed = tuple(t for t in EXPORTABLE if grant.allows(t, "r"))
        if not allowed:
            raise ApiError(403, [Issue("forbidden", "the token's scopes allow reading no type")])
        return allowed
    wanted: list[str] = []
    for value in values:
        for part in value.split(","):
            rtype = part.strip()
            if rtype not in EXPORTABLE:
                shown = rtype if _SAFE_NAME.fullmatch(rtype) else "a type"
                raise _bad("_type", f"careloop cannot export {shown}")
            if not grant.allows(rtype, "r"):
                raise ApiError(
                    403,
                    [Issue("forbidden", f"the token's scopes do not cover {rtype}", "_type")],
                )
            if rtype not in wanted:
                wanted.append(rtype)
    return tuple(wanted)


def _one(name: str, values: list[str]) -> str:
    if len(values) > 1:
        raise _bad(name, f"{name} may be given once")
    return values[0]


def parse_kickoff(items: Sequence[tuple[str, str]], grant: Grant, lenient: bool) -> KickOff:
    """Check the kick-off's query parameters (400 naming the first bad one).

    ``_type`` names types careloop serves (comma-separated or repeated); naming one the token's
    scopes do not cover is refused (403), and without ``_type`` the export holds the types they
    do cover. Other parameters are refused, or with ``lenient`` ignored and reported.
    """
    if len(items) > MAX_PARAMS:
        raise _bad("query", f"a kick-off takes at most {MAX_PARAMS} parameters")
    given: dict[str, list[str]] = {}
    ignored: list[str] = []
    for name, value in items:
        if len(name) > MAX_NAME_LENGTH or len(value) > MAX_VALUE_LENGTH or "\x00" in value:
            raise _bad(_name(name[:MAX_NAME_LENGTH]), "the parameter is too long or not text")
        if name not in KNOWN_PARAMS:
            if not lenient:
                raise _bad(_name(name), f"careloop's $export does not support {_name(name)}")
            if _name(name) not in ignored:
                ignored.append(_name(name))
            continue
        given.setdefault(name, []).append(value)
    if "_outputFormat" in given:
        fmt = _one("_outputFormat", given["_outputFormat"]).strip()
        if fmt not in OUTPUT_FORMATS:
            raise _bad("_outputFormat", "careloop writes application/fhir+ndjson only")
    since = None
    if "_since" in given:
        try:
            since = parse_instant(_one("_since", given["_since"]).strip())
        except ValueError:
            raise _bad("_since", "_since must be an instant: 2026-01-01T00:00:00Z") from None
    return KickOff(_types(given.get("_type", []), grant), since, tuple(ignored))
