"""FHIR date/dateTime/instant strings to aware datetime ranges (a partial date is a range)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from careloop.services.common.bounds import OutOfBounds, check_datetime

_DATE_RE = re.compile(
    r"(?P<y>\d{4})(-(?P<m>\d{2})(-(?P<d>\d{2})"
    r"(T(?P<H>\d{2}):(?P<M>\d{2})(:(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)


class FhirTimeError(ValueError):
    """A string that is not a FHIR date, dateTime or instant."""


def _add_month(value: datetime) -> datetime:
    return value.replace(year=value.year + value.month // 12, month=value.month % 12 + 1)


def parse_fhir_datetime_range(text: str) -> tuple[datetime, datetime]:
    """The instants a FHIR date/dateTime covers: ``2026`` is the whole year, and so on.

    A dateTime with a time but no offset is read as UTC (FHIR forbids it in resources; search
    values may omit it). Both ends must lie within the years careloop stores (1..9998 in UTC),
    else FhirTimeError.
    """
    lo, hi = _range(text)
    try:
        check_datetime(lo)
        check_datetime(hi)
    except OutOfBounds as exc:
        raise FhirTimeError(str(exc)) from None
    return lo, hi


def _range(text: str) -> tuple[datetime, datetime]:
    match = _DATE_RE.fullmatch(text)
    if not match:
        raise FhirTimeError("not a FHIR date or dateTime")
    g = match.groupdict()
    try:
        if g["m"] is None:
            lo = datetime(int(g["y"]), 1, 1, tzinfo=UTC)
            return lo, lo.replace(year=lo.year + 1) - timedelta(microseconds=1)
        if g["d"] is None:
            lo = datetime(int(g["y"]), int(g["m"]), 1, tzinfo=UTC)
            return lo, _add_month(lo) - timedelta(microseconds=1)
        if g["H"] is None:
            lo = datetime(int(g["y"]), int(g["m"]), int(g["d"]), tzinfo=UTC)
            return lo, lo + timedelta(days=1) - timedelta(microseconds=1)
        iso = text.replace("Z", "+00:00")
        if g["tz"] is None:
            iso += "+00:00"
        value = datetime.fromisoformat(iso).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise FhirTimeError("not a valid date") from exc
    try:
        if g["S"] is None:
            return value, value + timedelta(minutes=1) - timedelta(microseconds=1)
        if g["f"] is None:
            return value, value + timedelta(seconds=1) - timedelta(microseconds=1)
    except OverflowError as exc:
        raise FhirTimeError("not a valid date") from exc
    return value, value


def format_instant(value: datetime) -> str:
    """An aware datetime as a FHIR instant in UTC with millisecond precision."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
