"""A background relay: publishes committed outbox work without holding up the request.

Requests hand over the ids of the outbox rows they committed; one daemon thread per process
publishes them in batches. Nothing is lost if the process dies first: the rows stay open and due
in the database and beat's ``outbox.relay`` publishes them.
"""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy import Engine

from careloop.workflows.outbox import Leases, Publisher, Router, by_name, relay

log = logging.getLogger("careloop.outbox")
BATCH = 500


class RelayThread:
    """Publishes outbox ids handed to ``submit`` from a daemon thread."""

    def __init__(
        self,
        engine: Engine,
        publish: Publisher,
        leases: Leases | None = None,
        route: Router = by_name,
    ) -> None:
        self._engine = engine
        self._publish = publish
        self._leases = leases or Leases()
        self._route = route
        self._queue: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, ids: list[int]) -> None:
        """Publish ``ids`` soon (they are committed already)."""
        if not ids:
            return
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="careloop-outbox-relay", daemon=True
                    )
                    self._thread.start()
        self._queue.put(ids)

    def _run(self) -> None:
        while True:
            ids = list(self._queue.get())
            while len(ids) < BATCH:
                try:
                    ids.extend(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                relay(self._engine, self._publish, ids, leases=self._leases, route=self._route)
            except Exception as exc:  # beat's relay will publish what was missed
                log.warning("background relay failed (%s); beat will retry", type(exc).__name__)
