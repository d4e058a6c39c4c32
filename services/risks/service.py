"""Accepting risk signals: find or create the patient, map to FHIR, store once, record the event.

A signal's id derives from the app's ``app_signal_id`` (or, without one, from the signal's whole
content), so its RiskAssessment id is fixed before anything is stored: a retry, here or in a
concurrent request (whose unique-key collision makes the unit of work run again), finds it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from sqlmodel import Session

from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import deterministic_id
from careloop.fhir.risks import (
    RiskSignal,
    map_risk_assessment,
    map_risk_provenance,
    risk_assessment_id,
)
from careloop.services.auth.tokens import Principal
from careloop.services.common.errors import ApiError, Issue
from careloop.services.db import utcnow
from careloop.services.ehr.pushes import resources_changed
from careloop.services.metrics.recording import risk_signal_accepted
from careloop.services.outbox.events import ReadingCreated, ReadingTriage
from careloop.services.outbox.record import TRIAGE_KEY, record
from careloop.services.patients.service import create_patients, find_patients
from careloop.services.risks.schemas import RiskSignalIn
from careloop.services.store.repository import ResourceStore

CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class SignalOutcome:
    """An accepted signal (201) or a recognised retry (200)."""

    status: int
    signal_id: str
    patient: str
    resources: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The public JSON of this outcome."""
        return {"id": self.signal_id, "patient": self.patient, "resources": self.resources}


def signal_id_of(principal: Principal, signal: RiskSignalIn) -> str:
    """The careloop id of ``signal``: from its app id, else from its content (retries match)."""
    if signal.app_signal_id is not None:
        seed = f"{principal.tenant_id}|{principal.client_id}|app|{signal.app_signal_id}"
    else:
        seed = f"{principal.tenant_id}|{principal.client_id}|content|{content_hash(signal)}"
    return deterministic_id(seed, "risk-signal")


def content_hash(signal: RiskSignalIn) -> str:
    """A fingerprint of a signal's content, independent of key order and time notation."""
    data = signal.model_dump(mode="json", exclude_none=True)
    data["detected"] = signal.detected.timestamp()
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _mapped(
    signal_id: str, patient_id: str, principal: Principal, data: RiskSignalIn
) -> RiskSignal:
    return RiskSignal(
        signal_id=signal_id,
        patient_id=patient_id,
        client_id=principal.client_id,
        source=data.source,
        category=data.category,
        level=data.level,
        model_name=data.model.name,
        model_version=data.model.version,
        detected=data.detected,
        conversation=data.conversation,
        app_signal_id=data.app_signal_id,
    )


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def ingest_signal(session: Session, principal: Principal, data: RiskSignalIn) -> SignalOutcome:
    """Accept ``data`` into the caller's unit of work (the caller commits).

    A signal already accepted is answered with what it created (200), or refused with 409 when
    its app_signal_id was used for different content.
    """
    now = utcnow()
    if data.detected > now + CLOCK_SKEW:
        raise ApiError.invalid("detected", "detected time is in the future")
    store = ResourceStore(session, principal.tenant_id)
    signal_id = signal_id_of(principal, data)
    ra_id = risk_assessment_id(signal_id)
    ident = (data.patient.system, data.patient.value)
    # The signal first, then its patient: both were committed together, so once the signal is
    # visible its patient is too (the other order can straddle a concurrent first's commit).
    existing = store.read("RiskAssessment", ra_id)
    patient_id = find_patients(session, principal.tenant_id, [ident]).get(ident)
    if existing is not None:
        return _retry(existing.as_dict(), signal_id, patient_id, principal, data)
    if patient_id is None:
        patient_id = str(uuid.uuid4())
        create_patients(session, store, {ident: patient_id})
    signal = _mapped(signal_id, patient_id, principal, data)
    try:
        assessment = map_risk_assessment(signal)
        provenance = map_risk_provenance(signal, now)
    except MappingError as exc:
        raise ApiError.invalid(exc.field, exc.message) from exc
    store.create_many([assessment, provenance])
    risk_signal_accepted(session, data.category, data.level)
    triage: ReadingTriage | None = session.info.get(TRIAGE_KEY)
    urgent = bool(triage(assessment)) if triage is not None else None
    # The rule engine judges a RiskAssessment as it judges a reading: the event names it by
    # reference, since a bare id there means an Observation.
    record(
        session,
        principal.tenant_id,
        ReadingCreated(principal.tenant_id, f"RiskAssessment/{ra_id}", urgent),
    )
    references = [f"RiskAssessment/{ra_id}", f"Provenance/{provenance['id']}"]
    resources_changed(session, principal.tenant_id, {patient_id: references})
    return SignalOutcome(201, signal_id, f"Patient/{patient_id}", references)


def _retry(
    stored: dict[str, Any],
    signal_id: str,
    patient_id: str | None,
    principal: Principal,
    data: RiskSignalIn,
) -> SignalOutcome:
    subject = str((stored.get("subject") or {}).get("reference", ""))
    same = False
    if patient_id is not None and subject == f"Patient/{patient_id}":
        try:
            again = map_risk_assessment(_mapped(signal_id, patient_id, principal, data))
        except MappingError:
            again = {}
        same = _without_meta(again) == _without_meta(stored)
    if not same:
        raise ApiError(
            409,
            [
                Issue(
                    "duplicate",
                    f"a different risk signal with this app_signal_id was already accepted as "
                    f"{signal_id}",
                    "app_signal_id",
                )
            ],
        )
    provenance = deterministic_id(signal_id, "provenance")
    return SignalOutcome(
        200, signal_id, subject, [f"RiskAssessment/{stored['id']}", f"Provenance/{provenance}"]
    )


def read_signal(session: Session, principal: Principal, signal_id: str) -> SignalOutcome:
    """An accepted signal of the caller's tenant, or 404."""
    stored = ResourceStore(session, principal.tenant_id).read(
        "RiskAssessment", risk_assessment_id(signal_id)
    )
    if stored is None:
        raise ApiError.not_found(f"risk signal {signal_id}")
    resource = stored.as_dict()
    provenance = deterministic_id(signal_id, "provenance")
    return SignalOutcome(
        200,
        signal_id,
        str(resource["subject"]["reference"]),
        [f"RiskAssessment/{resource['id']}", f"Provenance/{provenance}"],
    )
