"""A per-process memory of app identifiers already mapped to patients.

A ``patient_identifier`` row is never updated or deleted once committed, so the patient an
identifier names can be remembered for good: a report for a known patient then costs no lookup.
Only what a committed transaction saw or wrote is remembered (a mapping written by a transaction
that rolls back is forgotten with it), per engine (one database), at most ``LIMIT`` entries.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event
from sqlmodel import Session

Key = tuple[str, str, str]
"""(tenant, system, value)."""
LIMIT = 200_000
_SEEN = "careloop_patient_ids_seen"


class KnownIds:
    """A bounded, thread-safe map of identifiers to patient ids (least recently used go)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._limit = limit
        self._ids: OrderedDict[Key, str] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[Key]) -> dict[Key, str]:
        """The remembered patient ids among ``keys``."""
        found: dict[Key, str] = {}
        with self._lock:
            for key in keys:
                patient_id = self._ids.get(key)
                if patient_id is not None:
                    self._ids.move_to_end(key)
                    found[key] = patient_id
        return found

    def put_many(self, mappings: dict[Key, str]) -> None:
        """Remember ``mappings``."""
        with self._lock:
            self._ids.update(mappings)
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)


_BY_ENGINE: WeakKeyDictionary[Engine, KnownIds] = WeakKeyDictionary()
_BY_ENGINE_LOCK = threading.Lock()


def known_ids(session: Session) -> KnownIds | None:
    """The memory of the database ``session`` is bound to (None when not bound to an engine)."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
    if not isinstance(engine, Engine):
        return None
    with _BY_ENGINE_LOCK:
        ids = _BY_ENGINE.get(engine)
        if ids is None:
            ids = _BY_ENGINE[engine] = KnownIds()
        return ids


def seen(session: Session, mappings: dict[Key, str]) -> None:
    """Note mappings this transaction read or wrote; remembered if it commits."""
    if mappings:
        session.info.setdefault(_SEEN, {}).update(mappings)


@event.listens_for(Session, "after_commit")
def _remember(session: Session) -> None:
    mappings: dict[Key, str] | None = session.info.pop(_SEEN, None)
    if mappings:
        ids = known_ids(session)
        if ids is not None:
            ids.put_many(mappings)


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, *_args: Any) -> None:
    # Any rollback, a savepoint's included, forgets all the transaction saw: a mapping written
    # inside a rolled-back savepoint must not be remembered, and which ones were is not tracked.
    session.info.pop(_SEEN, None)
