"""Telehealth sessions as FHIR R4 Encounters (class VR, shaped after US Core Encounter)."""

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careloop.fhir.elements import coding, fhir_datetime, reference
from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import business_identifier
from careloop.fhir.terminology import (
    SNOMED,
    TELEHEALTH_MODALITY_SYSTEM,
    TELEHEALTH_PLATFORM_EXTENSION,
    V3_ACT_CODE,
    V3_PARTICIPATION_TYPE,
)
from careloop.fhir.validation import checked

ENCOUNTER_STATUSES = frozenset({"planned", "in-progress", "finished", "cancelled"})
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Modality:
    """How a session is held: careloop code, text and SNOMED CT encounter type (if any)."""

    code: str
    text: str
    snomed: tuple[str, str] | None


# SNOMED CT has no specific concept for a text-chat consultation: chat is coded in careloop's
# modality system only (every type also carries that coding, so modality is always readable).
MODALITIES: dict[str, Modality] = {
    "video": Modality(
        "video", "Video consultation", ("448337001", "Telemedicine consultation with patient")
    ),
    "phone": Modality("phone", "Telephone consultation", ("185317003", "Telephone encounter")),
    "chat": Modality("chat", "Text chat consultation", None),
}


@dataclass(frozen=True)
class TelehealthSession:
    """A telehealth session as the service layer stores it."""

    session_id: str
    patient_id: str
    practitioner: tuple[str, str] | None  # (system, value) identifier of the clinician
    status: str  # planned | in-progress | finished | cancelled
    modality: str  # video | phone | chat
    start: datetime | None
    end: datetime | None
    platform: str | None
    reason: str | None


def _encounter_type(modality: str) -> dict[str, Any]:
    spec = MODALITIES.get(modality)
    if spec is None:
        raise MappingError("modality", "must be one of " + ", ".join(MODALITIES))
    codings = [coding(SNOMED, *spec.snomed)] if spec.snomed else []
    codings.append(coding(TELEHEALTH_MODALITY_SYSTEM, spec.code, spec.text))
    return {"coding": codings, "text": spec.text}


def _period(session: TelehealthSession) -> dict[str, str] | None:
    period: dict[str, str] = {}
    if session.start is not None:
        period["start"] = fhir_datetime(session.start, "start")
    if session.end is not None:
        period["end"] = fhir_datetime(session.end, "end")
        if session.start is not None and session.end < session.start:
            raise MappingError("end", "must not be before start")
    return period or None


def map_encounter(session: TelehealthSession) -> dict[str, Any]:
    """A validated Encounter whose id is the session id, so versions accrue on one resource.

    Raises MappingError (session_id, status, modality, start, end).
    """
    if not _FHIR_ID.fullmatch(session.session_id):
        raise MappingError("session_id", "must be a FHIR id (A-Z a-z 0-9 - . up to 64)")
    if session.status not in ENCOUNTER_STATUSES:
        raise MappingError("status", "must be one of " + ", ".join(sorted(ENCOUNTER_STATUSES)))
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": session.session_id,
        "identifier": [business_identifier("encounter", session.session_id)],
        "status": session.status,
        "class": coding(V3_ACT_CODE, "VR", "virtual"),
        "type": [_encounter_type(session.modality)],
        "subject": reference("Patient", session.patient_id),
    }
    if session.practitioner is not None:
        system, value = session.practitioner
        encounter["participant"] = [
            {
                "type": [
                    {
                        "coding": [coding(V3_PARTICIPATION_TYPE, "PPRF", "primary performer")],
                        "text": "primary performer",
                    }
                ],
                "individual": {
                    "type": "Practitioner",
                    "identifier": {"system": system, "value": value},
                },
            }
        ]
    period = _period(session)
    if period is not None:
        encounter["period"] = period
    if session.reason:
        encounter["reasonCode"] = [{"text": session.reason}]
    if session.platform:
        encounter["extension"] = [
            {"url": TELEHEALTH_PLATFORM_EXTENSION, "valueString": session.platform}
        ]
    return checked(encounter)
