"""At most ``DRAINS`` drains per EHR connection in a worker process (``workflows.ehr.push``).

A push that finds its connection's slots taken does its own Bundle and leaves the rest to the
drains holding them, each of which looks for open pushes once more after it lets its slot go,
so nothing left to them waits for a lease to end. The other worker threads stay free for
evaluations (and, with a second process, a second drain runs there).
"""

from __future__ import annotations

import threading
from collections import Counter

DRAINS = 1
"""Drains of one connection at once in a process (2 was tried: no gain measurable on a machine
this busy, see the README)."""

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
