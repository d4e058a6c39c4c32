"""Times as a clinician reads them: "2 h ago", "1 Dec 2026 14:05 UTC"."""

from __future__ import annotations

from datetime import UTC, datetime


def ago(then: datetime, now: datetime) -> str:
    """How long before ``now`` ``then`` was, in the largest unit that fits."""
    seconds = (now - then).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} d ago"


def until(then: datetime, now: datetime) -> str:
    """How long after ``now`` ``then`` is ("in 25 min"), or "due now" once passed."""
    seconds = (then - now).total_seconds()
    if seconds <= 0:
        return "due now"
    if seconds < 3600:
        return f"in {max(1, int(seconds // 60))} min"
    if seconds < 48 * 3600:
        return f"in {int(seconds // 3600)} h"
    return f"in {int(seconds // 86400)} d"


def stamp(moment: datetime) -> str:
    """An absolute time in UTC, e.g. ``1 Dec 2026 14:05 UTC``."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{utc.day} {utc:%b %Y %H:%M} UTC"
