"""The origins of the active EHR connections, allowed to frame careloop (CSP frame-ancestors).

Read from the database at most once per TTL, in a worker thread, so a request never waits on a
query except the one that refreshes the cache; if the query fails the previous origins stay.
"""

from __future__ import annotations

import logging
import threading
import time

import anyio
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from careloop.services.common.origins import origin_of
from careloop.services.ehr.models import EhrConnection

log = logging.getLogger("careloop.launch")


class EhrOrigins:
    """A cached list of the active EHR connections' origins."""

    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self.engine = engine
        self.ttl = ttl_seconds
        self._origins: tuple[str, ...] = ()
        self._fresh_until = -float("inf")
        self._lock = threading.Lock()

    async def __call__(self) -> tuple[str, ...]:
        """The origins, refreshed first if the cache is older than the TTL."""
        if time.monotonic() >= self._fresh_until:
            await anyio.to_thread.run_sync(self._refresh)
        return self._origins

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() < self._fresh_until:
                return  # another request refreshed it meanwhile
            try:
                with Session(self.engine) as session:
                    urls = session.exec(
                        select(EhrConnection.fhir_base_url).where(col(EhrConnection.active))
                    ).all()
            except SQLAlchemyError as exc:
                log.warning("EHR origins for frame-ancestors not read: %s", type(exc).__name__)
            else:
                self._origins = tuple(sorted({o for o in map(origin_of, urls) if o}))
            self._fresh_until = time.monotonic() + self.ttl
