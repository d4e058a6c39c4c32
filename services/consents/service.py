"""Recording, superseding, revoking and reading back a patient's consents."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from careloop.integrations.egress.consent import (
    PURPOSE_CODINGS,
    PURPOSES,
    Decision,
    deciding_consent,
)
from careloop.services.audit.service import record_event
from careloop.services.auth.tokens import Principal
from careloop.services.common.errors import ApiError, Issue
from careloop.services.consents.mapping import (
    APP_CONSENT_SYSTEM,
    identifier_value,
    map_consent,
    single_purpose,
)
from careloop.services.consents.schemas import ConsentIn
from careloop.services.db import utcnow
from careloop.services.patients.service import create_patients, find_patients
from careloop.services.store.repository import ResourceStore, StoredResource


@dataclass(frozen=True)
class Recorded:
    """A recorded consent: 201 new, 200 a retry of one already recorded."""

    status: int
    consent: StoredResource
    superseded: tuple[str, ...] = ()


def _same_decision(resource: dict[str, Any], fresh: dict[str, Any]) -> bool:
    return bool(
        resource.get("patient") == fresh["patient"]
        and resource.get("provision") == fresh["provision"]
    )


def record_consent(session: Session, principal: Principal, consent: ConsentIn) -> Recorded:
    """Store ``consent`` as an active FHIR Consent; earlier ones for its purpose go inactive.

    A retry (the same ``app_consent_id``, or without one the same decision already in force)
    answers the first Consent. The same ``app_consent_id`` with another decision is a 409.
    """
    store = ResourceStore(session, principal.tenant_id)
    ident = (consent.patient.system, consent.patient.value)
    patient_id = find_patients(session, principal.tenant_id, [ident]).get(ident)
    if patient_id is None:
        patient_id = str(uuid.uuid4())
        create_patients(session, store, {ident: patient_id})
    consent_id = str(uuid.uuid4())
    fresh = map_consent(consent_id, patient_id, principal.client_id, consent, utcnow())
    if consent.app_consent_id is not None:
        value = identifier_value(principal.client_id, consent, consent_id)
        for earlier in store.find_by_token("Consent", "identifier", APP_CONSENT_SYSTEM, value):
            if not _same_decision(earlier.as_dict(), fresh):
                raise ApiError(
                    409,
                    [
                        Issue(
                            "conflict",
                            "a different consent was recorded with this app_consent_id",
                            "app_consent_id",
                        )
                    ],
                )
            return Recorded(200, earlier)
    purpose = PURPOSE_CODINGS[consent.purpose]
    superseded = []
    for earlier in store.for_patient("Consent", patient_id):
        resource = earlier.as_dict()
        if resource.get("status") != "active" or single_purpose(resource) != purpose:
            continue
        if consent.app_consent_id is None and _same_decision(resource, fresh):
            return Recorded(200, earlier)  # the decision in force already: a retry
        resource["status"] = "inactive"
        store.update(resource)
        superseded.append(earlier.id)
    [stored] = store.create_many([fresh])
    record_event(
        session,
        principal.tenant_id,
        "consent",
        f"client:{principal.client_id}",
        "success",
        f"Patient/{patient_id} Consent/{stored.id}",
    )
    return Recorded(201, stored, tuple(superseded))


def revoke_consent(session: Session, tenant_id: str, consent_id: str, agent: str) -> StoredResource:
    """Make the Consent inactive now (a revoked one stays revoked, audited once); 404 if
    unknown."""
    store = ResourceStore(session, tenant_id)
    stored = store.read("Consent", consent_id)
    if stored is None:
        raise ApiError.not_found(f"Consent/{consent_id}")
    resource = stored.as_dict()
    if resource.get("status") != "active":
        return stored
    resource["status"] = "inactive"
    updated = store.update(resource)
    patient = (resource.get("patient") or {}).get("reference", "")
    record_event(session, tenant_id, "consent", agent, "success", f"{patient} Consent/{consent_id}")
    return updated


def in_force(
    session: Session, tenant_id: str, patient_id: str | None, defaults: dict[str, Decision]
) -> dict[str, Any]:
    """Per purpose: the decision now, and the Consent that made it (None: the tenant policy)."""
    stored = (
        ResourceStore(session, tenant_id).for_patient("Consent", patient_id)
        if patient_id is not None
        else []
    )
    pairs = [(s.id, s.as_dict()) for s in stored]
    purposes: dict[str, Any] = {}
    for purpose in PURPOSES:
        decision, consent_id = deciding_consent(pairs, purpose, defaults)
        purposes[purpose] = {
            "decision": decision,
            "source": "consent" if consent_id else "tenant-policy",
            "consent": consent_id,
        }
    return {
        "patient": f"Patient/{patient_id}" if patient_id else None,
        "purposes": purposes,
        "consents": [r for _id, r in pairs if r.get("status") == "active"],
    }
