"""One drain per EHR connection in a worker process (``workflows.ehr.push.drain``).

A push that finds its connection's slot taken does its own Bundle and leaves the rest to the
drain holding it, which looks for open pushes once more after it lets the slot go, so nothing
left to it waits for a lease to end.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_held: set[str] = set()


def take(connection_id: str) -> bool:
    """Take the slot of ``connection_id`` if it is free; whether this thread now holds it."""
    with _lock:
        if connection_id in _held:
            return False
        _held.add(connection_id)
        return True


def give_back(connection_id: str) -> None:
    """Free the slot of ``connection_id``."""
    with _lock:
        _held.discard(connection_id)
