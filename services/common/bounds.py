"""Bounds every value keeps where it enters careloop: strings, integers, date-times, JSON shape.

Both the app API and the FHIR API use these, so a value that passes can be stored and computed
with on SQLite and PostgreSQL alike: no NUL (PostgreSQL text cannot hold it), no number a 64-bit
column or the JSON encoder cannot hold, no date-time outside what Python's ``datetime`` and
PostgreSQL's ``timestamptz`` both represent once converted to UTC (with a year to spare, so a
range end such as "the whole year 9998" stays representable).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

NUL = "\x00"
FIRST_YEAR = 1
LAST_YEAR = 9998
MAX_OFFSET = timedelta(hours=14)
"""FHIR (and ISO 8601 practice) allow UTC offsets up to 14 hours, in whole minutes."""
MAX_JSON_DEPTH = 64
"""Containers (objects and arrays) nested in one body: a deep PHQ item tree stays far below."""
MAX_JSON_NUMBER = 10**18
"""Magnitude every JSON number stays below: the encoder and 64-bit columns hold it exactly."""
INT32_MAX = 2**31 - 1

Path = tuple[str | int, ...]


def _no_nul(value: str) -> str:
    if NUL in value:
        raise ValueError("must not contain NUL characters")
    return value


NoNul = AfterValidator(_no_nul)
"""Pydantic validator: the string has no NUL character."""


def _safe_datetime(value: datetime) -> datetime:
    check_datetime(value)
    return value


SafeDatetime = Annotated[datetime, AfterValidator(_safe_datetime)]
"""A datetime that stays within years 1..9998 in UTC (naive ones are left to the caller)."""

Str64 = Annotated[str, NoNul, StringConstraints(max_length=64)]
Str200 = Annotated[str, NoNul, StringConstraints(max_length=200)]
Str300 = Annotated[str, NoNul, StringConstraints(max_length=300)]
Str2000 = Annotated[str, NoNul, StringConstraints(max_length=2000)]


class OutOfBounds(ValueError):
    """A value outside what careloop stores; the message never echoes the value."""


def check_datetime(value: datetime) -> None:
    """Raise OutOfBounds unless ``value`` lies within years 1..9998 in UTC, its offset in FHIR's
    range (naive values: their own year)."""
    offset = value.utcoffset()
    if offset is None:
        if not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise OutOfBounds(f"must lie between the years {FIRST_YEAR} and {LAST_YEAR}")
        return
    if abs(offset) > MAX_OFFSET or offset % timedelta(minutes=1):
        raise OutOfBounds("the offset must be whole minutes within -14:00..+14:00")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise OutOfBounds(f"must lie between the years {FIRST_YEAR} and {LAST_YEAR}") from None
    if not FIRST_YEAR <= in_utc.year <= LAST_YEAR:
        raise OutOfBounds(f"must lie between the years {FIRST_YEAR} and {LAST_YEAR}")


_DIGITS = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_bounded_int(text: str, maximum: int) -> int | None:
    """``text`` as a non-negative integer of ASCII digits up to ``maximum``, else None.

    ``str.isdigit`` and ``int`` accept ``²`` or ``٣``; this does not.
    """
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= maximum else None


@dataclass(frozen=True)
class JsonProblem:
    """Where parsed JSON holds what careloop cannot, and why (``too_deep``: the nesting)."""

    path: Path
    message: str
    too_deep: bool = False


def json_problem(
    data: Any, *, max_depth: int = MAX_JSON_DEPTH, max_number: int = MAX_JSON_NUMBER
) -> JsonProblem | None:
    """The first place in parsed JSON ``data`` careloop cannot hold, and why; None if none.

    Walks without recursion, so any depth the parser accepted is safe to inspect. Checks NUL in
    strings and keys, nesting deeper than ``max_depth``, and numbers that are not finite or
    whose magnitude reaches ``max_number``.
    """
    stack: list[tuple[Path, Any, int]] = [((), data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= max_depth:
                return JsonProblem(path, f"nests deeper than {max_depth} levels", True)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = []
            for key, child in items:
                if isinstance(key, str) and NUL in key:
                    return JsonProblem(path, "a member name contains a NUL character")
                children.append(((*path, key), child, depth + 1))
            stack.extend(reversed(children))  # the first problem in document order
        elif isinstance(value, str):
            if NUL in value:
                return JsonProblem(path, "must not contain NUL characters")
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                return JsonProblem(path, "must be a finite number")
            if abs(value) >= max_number:
                return JsonProblem(path, f"must be smaller in magnitude than {max_number:.0e}")
    return None
