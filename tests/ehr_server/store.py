"""Thread-safe, versioned, in-memory resource store with all-or-nothing transactions."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

Resource = dict[str, Any]


def format_instant(moment: datetime) -> str:
    """A FHIR instant in UTC with microseconds, e.g. ``2024-05-01T12:00:00.000001Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_instant(text: str) -> datetime:
    """Parse a FHIR instant/dateTime/date; naive values are taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def identifier_values(resource: Resource) -> list[str]:
    """The ``identifier[].value`` strings of a resource."""
    identifiers = resource.get("identifier") or []
    items = [identifiers] if isinstance(identifiers, dict) else identifiers
    return [str(i["value"]) for i in items if isinstance(i, dict) and i.get("value")]


class Store:
    """Resources by type and id, each a list of versions (oldest first)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, list[Resource]]] = {}
        self._by_identifier: dict[tuple[str, str], set[str]] = {}
        """(type, identifier value) -> ids of resources some version of which carried it."""
        self._last_instant = datetime.fromtimestamp(0, UTC)

    def next_instant(self) -> str:
        """A strictly increasing ``lastUpdated`` value (so ``_lastUpdated=gt`` never ties)."""
        with self._lock:
            now = datetime.now(UTC)
            if now <= self._last_instant:
                now = self._last_instant + timedelta(microseconds=1)
            self._last_instant = now
            return format_instant(now)

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """Hold the store lock; commit the staged writes only if the block succeeds."""
        with self._lock:
            txn = Txn(self)
            yield txn
            for (rtype, rid), versions in txn.staged.items():
                self._data.setdefault(rtype, {}).setdefault(rid, []).extend(versions)
                for version in versions:
                    for value in identifier_values(version):
                        self._by_identifier.setdefault((rtype, value), set()).add(rid)

    def versions(self, rtype: str, rid: str) -> list[Resource]:
        """Committed versions of one resource (copies)."""
        with self._lock:
            return copy.deepcopy(self._data.get(rtype, {}).get(rid, []))

    def current(self, rtype: str) -> list[Resource]:
        """Committed current versions of every resource of ``rtype`` (copies)."""
        with self._lock:
            return [copy.deepcopy(v[-1]) for v in self._data.get(rtype, {}).values()]


class Txn:
    """A view of the store plus staged writes; only :meth:`Store.transaction` commits."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.staged: dict[tuple[str, str], list[Resource]] = {}

    def versions(self, rtype: str, rid: str) -> list[Resource]:
        """All versions, committed then staged (not copies: do not mutate)."""
        committed = self._store._data.get(rtype, {}).get(rid, [])
        return committed + self.staged.get((rtype, rid), [])

    def read(self, rtype: str, rid: str) -> Resource | None:
        """The current version or None."""
        versions = self.versions(rtype, rid)
        return versions[-1] if versions else None

    def all(self, rtype: str) -> list[Resource]:
        """Current versions of every resource of ``rtype`` (not copies)."""
        ids = list(self._store._data.get(rtype, {}))
        ids += [rid for (t, rid) in self.staged if t == rtype and rid not in ids]
        found = (self.read(rtype, rid) for rid in ids)
        return [r for r in found if r is not None]

    def with_identifier(self, rtype: str, value: str) -> list[Resource]:
        """Current versions that may carry identifier ``value`` (a superset: filter them)."""
        ids = set(self._store._by_identifier.get((rtype, value), ()))
        ids.update(rid for (t, rid) in self.staged if t == rtype)
        found = (self.read(rtype, rid) for rid in sorted(ids))
        return [r for r in found if r is not None]

    def new_id(self) -> str:
        """A fresh server-assigned id."""
        return str(uuid.uuid4())

    def write(self, rtype: str, rid: str, resource: Resource, keep_meta: bool = False) -> Resource:
        """Stage a new version; the server sets id, ``meta.versionId`` and ``lastUpdated``.

        With ``keep_meta`` (seeding) a given ``lastUpdated`` is kept, and ``versionId`` too for
        a first version.
        """
        body = copy.deepcopy(resource)
        meta = dict(body.pop("meta", None) or {})
        previous = self.versions(rtype, rid)
        last = str(previous[-1]["meta"].get("versionId", "")) if previous else ""
        version = str(int(last) + 1 if last.isdigit() else len(previous) + 1)
        if not keep_meta or "versionId" not in meta or previous:
            meta["versionId"] = version
        if not keep_meta or "lastUpdated" not in meta:
            meta["lastUpdated"] = self._store.next_instant()
        body.pop("resourceType", None)
        body.pop("id", None)
        stored = {"resourceType": rtype, "id": rid, "meta": meta, **body}
        self.staged.setdefault((rtype, rid), []).append(stored)
        return stored
