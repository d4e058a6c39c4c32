"""At most ``DRAINS`` drains per EHR connection in a worker process (``workflows.ehr.push``).

Two, so one drain's Bundle is in flight while the other reads and records its own. A push
that finds its connection's slots taken does its own Bundle and leaves the rest to the drains
holding them, each of which looks for open pushes once more after it lets its slot go, so
nothing left to them waits for a lease to end.
"""

from __future__ import annotations

import threading
from collections import Counter

DRAINS = 2
"""Drains of one connection at once in a process."""

_lock = threading.Lock()
_held: Counter[str] = Counter()


def take(connection_id: str) -> bool:
    """Take a slot of ``connection_id`` if one is free; whether this thread now holds one."""
    with _lock:
        if _held[connection_id] >= DRAINS:
            return False
        _held[connection_id] += 1
        return True


def give_back(connection_id: str) -> None:
    """Free a slot of ``connection_id``."""
    with _lock:
        _held[connection_id] -= 1
        if _held[connection_id] <= 0:
            del _held[connection_id]
