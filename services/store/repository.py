"""The FHIR resource store: versioned writes, reads and token lookups, scoped to one tenant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlmodel import Session

from careloop.services.common.bulk_insert import insert_rows
from careloop.services.common.fhirtime import format_instant
from careloop.services.db import utcnow
from careloop.services.store.indexing import SearchValues, extract_search_values
from careloop.services.store.models import FhirResource, FhirResourceHistory, SearchToken
from careloop.services.store.written import note_written

_R = FhirResource.__table__  # type: ignore[attr-defined]
_H = FhirResourceHistory.__table__  # type: ignore[attr-defined]
_T = SearchToken.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StoredResource:
    """One version of a stored resource, its JSON as stored."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    content: str

    @property
    def reference(self) -> str:
        """``Type/id``."""
        return f"{self.resource_type}/{self.id}"

    @property
    def etag(self) -> str:
        """The weak ETag of this version."""
        return f'W/"{self.version_id}"'

    def as_dict(self) -> dict[str, Any]:
        """The resource parsed from its stored JSON."""
        result: dict[str, Any] = orjson.loads(self.content)
        return result


class VersionConflict(Exception):
    """An update named a version that is no longer current."""


class UnstorableResource(ValueError):
    """A resource with an indexed value the store cannot hold; writes check this first."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{where}: {message}" for where, message in problems))
        self.problems = problems


def _indexable(resource: dict[str, Any]) -> SearchValues:
    values = extract_search_values(resource)
    if values.problems:
        raise UnstorableResource(values.problems)
    return values


def _with_meta(resource: dict[str, Any], version: int, when: datetime) -> str:
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(when)
    resource["meta"] = meta
    return orjson.dumps(resource).decode()


def _token_rows(tenant_id: str, rtype: str, seq: int, values: SearchValues) -> list[dict[str, Any]]:
    return [
        {
            "resource_seq": seq,
            "tenant_id": tenant_id,
            "resource_type": rtype,
            "param": param,
            "system": system,
            "code": code,
        }
        for param, system, code in values.tokens
    ]


class ResourceStore:
    """Reads and writes FHIR resources of one tenant inside the caller's unit of work."""

    def __init__(self, session: Session, tenant_id: str) -> None:
        self.session = session
        self.tenant_id = tenant_id

    def create_many(self, resources: Sequence[dict[str, Any]]) -> list[StoredResource]:
        """Store new resources (each with ``id`` set, already valid) as version 1."""
        if not resources:
            return []
        indexed = [_indexable(resource) for resource in resources]
        now = utcnow()
        rows = []
        for resource, values in zip(resources, indexed, strict=True):
            rows.append(
                {
                    "tenant_id": self.tenant_id,
                    "resource_type": resource["resourceType"],
                    "id": resource["id"],
                    "version_id": 1,
                    "last_updated": now,
                    "patient_id": values.patient_id,
                    "date_lo": values.date_lo,
                    "date_hi": values.date_hi,
                    "content": _with_meta(resource, 1, now),
                }
            )
        returned = insert_rows(self.session, _R, rows, returning=("resource_type", "id", "seq"))
        seqs = {(r.resource_type, r.id): r.seq for r in returned}
        tokens: list[dict[str, Any]] = []
        for resource, values in zip(resources, indexed, strict=True):
            rtype = resource["resourceType"]
            seq = seqs[(rtype, resource["id"])]
            tokens.extend(_token_rows(self.tenant_id, rtype, seq, values))
        insert_rows(self.session, _T, tokens)
        note_written(
            self.session,
            self.tenant_id,
            ((f"{r['resource_type']}/{r['id']}", r["patient_id"]) for r in rows),
            created=True,
        )
        return [StoredResource(r["resource_type"], r["id"], 1, now, r["content"]) for r in rows]

    def update(
        self, resource: dict[str, Any], expected_version: int | None = None
    ) -> StoredResource:
        """Store a new version of an existing resource; the old one moves to history."""
        rtype, rid = resource["resourceType"], resource["id"]
        values = _indexable(resource)
        current = self.session.execute(
            select(_R.c.seq, _R.c.version_id, _R.c.last_updated, _R.c.content)
            .where(_R.c.tenant_id == self.tenant_id, _R.c.resource_type == rtype, _R.c.id == rid)
            .with_for_update()
        ).one_or_none()
        if current is None:
            raise KeyError(f"{rtype}/{rid}")
        if expected_version is not None and current.version_id != expected_version:
            raise VersionConflict(f"{rtype}/{rid} is at version {current.version_id}")
        self.session.execute(
            insert(_H).values(
                resource_type=rtype,
                id=rid,
                version_id=current.version_id,
                tenant_id=self.tenant_id,
                last_updated=current.last_updated,
                content=current.content,
            )
        )
        now = utcnow()
        version = current.version_id + 1
        content = _with_meta(resource, version, now)
        self.session.execute(
            update(_R)
            .where(_R.c.seq == current.seq)
            .values(
                version_id=version,
                last_updated=now,
                patient_id=values.patient_id,
                date_lo=values.date_lo,
                date_hi=values.date_hi,
                content=content,
            )
        )
        self.session.execute(delete(_T).where(_T.c.resource_seq == current.seq))
        insert_rows(self.session, _T, _token_rows(self.tenant_id, rtype, current.seq, values))
        note_written(self.session, self.tenant_id, [(f"{rtype}/{rid}", values.patient_id)], False)
        return StoredResource(rtype, rid, version, now, content)

    def read(self, rtype: str, rid: str) -> StoredResource | None:
        """The current version, or None."""
        row = self.session.execute(
            select(_R.c.version_id, _R.c.last_updated, _R.c.content).where(
                _R.c.tenant_id == self.tenant_id, _R.c.resource_type == rtype, _R.c.id == rid
            )
        ).one_or_none()
        if row is None:
            return None
        return StoredResource(rtype, rid, row.version_id, row.last_updated, row.content)

    def vread(self, rtype: str, rid: str, version: int) -> StoredResource | None:
        """One version, current or historical, or None."""
        current = self.read(rtype, rid)
        if current is None or current.version_id == version:
            return current
        row = self.session.execute(
            select(_H.c.last_updated, _H.c.content).where(
                _H.c.tenant_id == self.tenant_id,
                _H.c.resource_type == rtype,
                _H.c.id == rid,
                _H.c.version_id == version,
            )
        ).one_or_none()
        if row is None:
            return None
        return StoredResource(rtype, rid, version, row.last_updated, row.content)

    def find_by_token(self, rtype: str, param: str, system: str, code: str) -> list[StoredResource]:
        """Current resources of ``rtype`` carrying the token ``system|code`` for ``param``."""
        rows = self.session.execute(
            select(_R.c.id, _R.c.version_id, _R.c.last_updated, _R.c.content)
            .join(_T, _T.c.resource_seq == _R.c.seq)
            .where(
                _T.c.tenant_id == self.tenant_id,
                _T.c.resource_type == rtype,
                _T.c.param == param,
                _T.c.system == system,
                _T.c.code == code,
            )
        ).all()
        return [StoredResource(rtype, r.id, r.version_id, r.last_updated, r.content) for r in rows]

    def for_patient(self, rtype: str, patient_id: str) -> list[StoredResource]:
        """Current resources of ``rtype`` in the patient's compartment, oldest date first."""
        rows = self.session.execute(
            select(_R.c.id, _R.c.version_id, _R.c.last_updated, _R.c.content)
            .where(
                _R.c.tenant_id == self.tenant_id,
                _R.c.resource_type == rtype,
                _R.c.patient_id == patient_id,
            )
            .order_by(_R.c.date_lo, _R.c.seq)
        ).all()
        return [StoredResource(rtype, r.id, r.version_id, r.last_updated, r.content) for r in rows]

    def for_patients(
        self, rtype: str, patient_ids: Sequence[str]
    ) -> dict[str, list[StoredResource]]:
        """``for_patient`` of several patients in one query (each patient's list, maybe empty)."""
        found: dict[str, list[StoredResource]] = {p: [] for p in patient_ids}
        for start in range(0, len(patient_ids), 500):
            rows = self.session.execute(
                select(_R.c.id, _R.c.patient_id, _R.c.version_id, _R.c.last_updated, _R.c.content)
                .where(
                    _R.c.tenant_id == self.tenant_id,
                    _R.c.resource_type == rtype,
                    _R.c.patient_id.in_(patient_ids[start : start + 500]),
                )
                .order_by(_R.c.date_lo, _R.c.seq)
            ).all()
            for r in rows:
                found[r.patient_id].append(
                    StoredResource(rtype, r.id, r.version_id, r.last_updated, r.content)
                )
        return found

    def read_many(self, references: Iterable[str]) -> list[StoredResource]:
        """Current versions of the given ``Type/id`` references that exist."""
        found = []
        for reference in references:
            rtype, _, rid = reference.partition("/")
            stored = self.read(rtype, rid)
            if stored is not None:
                found.append(stored)
        return found
