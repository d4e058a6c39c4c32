"""Recording telehealth sessions as versioned FHIR Encounters."""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session, select

from careloop.fhir.encounters import TelehealthSession, map_encounter
from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import deterministic_id
from careloop.fhir.provenance import map_provenance
from careloop.services.auth.tokens import Principal
from careloop.services.common.errors import ApiError, Issue
from careloop.services.db import utcnow
from careloop.services.ehr.pushes import resources_changed
from careloop.services.patients.service import create_patients, find_patients
from careloop.services.store.repository import ResourceStore
from careloop.services.telehealth.models import TelehealthSessionRow
from careloop.services.telehealth.schemas import SessionIn, SessionPatch, Status

FINAL_STATUSES: frozenset[Status] = frozenset({"finished", "cancelled"})


def _encounter(row: TelehealthSessionRow) -> dict[str, Any]:
    practitioner = None
    if row.practitioner_system and row.practitioner_value:
        practitioner = (row.practitioner_system, row.practitioner_value)
    try:
        return map_encounter(
            TelehealthSession(
                session_id=row.id,
                patient_id=row.patient_id,
                practitioner=practitioner,
                status=row.status,
                modality=row.modality,
                start=row.start,
                end=row.end,
                platform=row.platform,
                reason=row.reason,
            )
        )
    except MappingError as exc:
        raise ApiError.invalid(exc.field, exc.message) from exc


def session_json(row: TelehealthSessionRow) -> dict[str, Any]:
    """The public JSON of a session."""
    return {
        "id": row.id,
        "patient": f"Patient/{row.patient_id}",
        "encounter": f"Encounter/{row.id}",
        "version": row.version,
        "status": row.status,
        "modality": row.modality,
        "start": row.start.isoformat() if row.start else None,
        "end": row.end.isoformat() if row.end else None,
        "resources": [f"Encounter/{row.id}", f"Provenance/{_provenance_id(row)}"],
    }


def _provenance(row: TelehealthSessionRow, principal: Principal, activity: str) -> dict[str, Any]:
    return map_provenance(
        f"{row.id}/v{row.version}",
        [f"Encounter/{row.id}"],
        utcnow(),
        principal.client_id,
        row.patient_id,
        activity,
    )


def _provenance_id(row: TelehealthSessionRow) -> str:
    return deterministic_id(f"{row.id}/v{row.version}", "provenance")


def create_session(
    session: Session, principal: Principal, data: SessionIn
) -> tuple[TelehealthSessionRow, bool]:
    """Record a new session (or find the one with the same app_session_id); True if created."""
    if data.app_session_id is not None:
        existing = session.exec(
            select(TelehealthSessionRow).where(
                TelehealthSessionRow.tenant_id == principal.tenant_id,
                TelehealthSessionRow.client_id == principal.client_id,
                TelehealthSessionRow.app_session_id == data.app_session_id,
            )
        ).first()
        if existing is not None:
            return existing, False
    store = ResourceStore(session, principal.tenant_id)
    ident = (data.patient.system, data.patient.value)
    patient_id = find_patients(session, principal.tenant_id, [ident]).get(ident)
    if patient_id is None:
        patient_id = str(uuid.uuid4())
        create_patients(session, store, {ident: patient_id})
    row = TelehealthSessionRow(
        id=str(uuid.uuid4()),
        tenant_id=principal.tenant_id,
        client_id=principal.client_id,
        patient_id=patient_id,
        practitioner_system=data.practitioner.system if data.practitioner else None,
        practitioner_value=data.practitioner.value if data.practitioner else None,
        status=data.status,
        modality=data.modality,
        start=data.start,
        end=data.end,
        platform=data.platform,
        reason=data.reason,
        app_session_id=data.app_session_id,
    )
    encounter = _encounter(row)
    session.add(row)
    session.flush()
    provenance = _provenance(row, principal, "CREATE")
    store.create_many([encounter, provenance])
    resources_changed(
        session,
        principal.tenant_id,
        {row.patient_id: [f"Encounter/{row.id}", f"Provenance/{provenance['id']}"]},
    )
    return row, True


def get_session_row(
    session: Session, principal: Principal, session_id: str
) -> TelehealthSessionRow:
    """The tenant's session, or 404."""
    row = session.get(TelehealthSessionRow, session_id, with_for_update=True)
    if row is None or row.tenant_id != principal.tenant_id:
        raise ApiError.not_found(f"telehealth session {session_id}")
    return row


def update_session(
    session: Session, principal: Principal, session_id: str, patch: SessionPatch
) -> TelehealthSessionRow:
    """Apply ``patch``; the Encounter gains a version and a Provenance records the change."""
    row = get_session_row(session, principal, session_id)
    changes = patch.model_dump(exclude_unset=True)
    if "patient" in changes and patch.patient is not None:
        ident = (patch.patient.system, patch.patient.value)
        if find_patients(session, principal.tenant_id, [ident]).get(ident) != row.patient_id:
            raise ApiError(
                422,
                [Issue("invalid", "the patient is not the patient of this session", "patient")],
            )
    if row.status in FINAL_STATUSES and patch.status not in (None, row.status):
        raise ApiError(
            409, [Issue("business-rule", f"the session is already {row.status}", "status")]
        )
    for name in ("status", "modality", "start", "end", "platform", "reason"):
        if name in changes:
            setattr(row, name, getattr(patch, name))
    if "practitioner" in changes:
        row.practitioner_system = patch.practitioner.system if patch.practitioner else None
        row.practitioner_value = patch.practitioner.value if patch.practitioner else None
    row.version += 1
    row.updated_at = utcnow()
    encounter = _encounter(row)
    store = ResourceStore(session, principal.tenant_id)
    store.update(encounter)
    provenance = _provenance(row, principal, "UPDATE")
    store.create_many([provenance])
    session.add(row)
    resources_changed(
        session,
        principal.tenant_id,
        {row.patient_id: [f"Encounter/{row.id}", f"Provenance/{provenance['id']}"]},
    )
    return row
