"""How long a retry waits: exponential backoff with full jitter."""

from __future__ import annotations

import random


def backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, capped at 5 minutes, never sooner than Retry-After."""
    delay = random.uniform(0.5, 1.0) * min(300.0, 2.0**attempt)
    return min(300.0, max(delay, retry_after or 0.0))
