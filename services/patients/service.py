"""Finding or creating the careloop Patient for an app-supplied identifier."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, tuple_
from sqlmodel import Session

from careloop.fhir.patients import map_patient
from careloop.services.patients.known_ids import known_ids, seen
from careloop.services.patients.models import PatientIdentifier
from careloop.services.store.repository import ResourceStore

_P = PatientIdentifier.__table__  # type: ignore[attr-defined]
Ident = tuple[str, str]


def find_patients(session: Session, tenant_id: str, idents: Iterable[Ident]) -> dict[Ident, str]:
    """The patient ids already known for the given identifiers."""
    wanted = set(idents)
    memory = known_ids(session)
    remembered = memory.get_many((tenant_id, *i) for i in wanted) if memory is not None else {}
    found: dict[Ident, str] = {(s, v): pid for (_t, s, v), pid in remembered.items()}
    missing = [i for i in wanted if i not in found]
    for start in range(0, len(missing), 500):
        chunk = missing[start : start + 500]
        rows = session.execute(
            select(_P.c.system, _P.c.value, _P.c.patient_id).where(
                _P.c.tenant_id == tenant_id,
                tuple_(_P.c.system, _P.c.value).in_(chunk),
            )
        ).all()
        looked_up = {(r.system, r.value): r.patient_id for r in rows}
        found.update(looked_up)
        seen(session, {(tenant_id, s, v): pid for (s, v), pid in looked_up.items()})
    return found


def create_patients(session: Session, store: ResourceStore, ids: dict[Ident, str]) -> None:
    """Create a Patient (with the given id) for each new identifier, in the caller's unit of work.

    A concurrent creation of the same identifier makes the unit of work fail on the primary key
    of ``patient_identifier``; the caller runs again and then finds the other's patient.
    """
    if not ids:
        return
    session.execute(
        _P.insert(),
        [
            {"tenant_id": store.tenant_id, "system": s, "value": v, "patient_id": pid}
            for (s, v), pid in ids.items()
        ],
    )
    store.create_many([map_patient(pid, [ident]) for ident, pid in ids.items()])
    seen(session, {(store.tenant_id, s, v): pid for (s, v), pid in ids.items()})


def patient_exists(session: Session, tenant_id: str, ident: Ident) -> str | None:
    """The patient id for ``ident``, or None."""
    return find_patients(session, tenant_id, [ident]).get(ident)
