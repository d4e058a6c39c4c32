"""Group sessions (virtual support groups, group telehealth) as FHIR R4 Group and Encounters.

One session is three kinds of resource:

- a ``Group`` (type person, actual) whose members are the participating Patients, managed by the
  facilitator (a Practitioner by identifier);
- the group's ``Encounter``: subject the Group (R4 allows ``Encounter.subject`` = Group), class
  ``VR`` (virtual) or ``AMB`` (in person), the facilitator as primary performer;
- one ``Encounter`` per participant: subject the Patient, ``partOf`` the group's Encounter.

R4 ``Encounter.status`` has no "no-show" (``Appointment`` has), so attendance is mapped as:
attended -> ``finished``; left early -> ``finished`` with ``period.end`` the time they left (the
session's end when the app does not say); no-show -> ``cancelled`` (the encounter did not take
place for that patient). The three are told apart by a careloop attendance coding in
``Encounter.type`` (``ATTENDANCE_SYSTEM``), which the missed-session rule reads. No extensions.

Each write is described by one ``Provenance`` (`map_group_provenance`): CREATE for the first
recording, UPDATE when a planned session is recorded as held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careloop.fhir.elements import coding, fhir_datetime, reference
from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import (
    IDENTIFIER_BASE,
    business_identifier,
    deterministic_id,
)
from careloop.fhir.provenance import agent, app_client_agent, provenance_resource
from careloop.fhir.terminology import (
    CARELOOP_FHIR,
    V3_ACT_CODE,
    V3_PARTICIPATION_TYPE,
)
from careloop.fhir.validation import checked

ATTENDANCE_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/group-attendance"
GROUP_MODALITY_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/group-session-modality"
GROUP_IDENTIFIER_SYSTEM = f"{IDENTIFIER_BASE}/group"
ATTENDANCE: dict[str, tuple[str, str]] = {
    "attended": ("finished", "Attended"),
    "left-early": ("finished", "Left early"),
    "no-show": ("cancelled", "Did not attend"),
}
"""Attendance -> (participant Encounter.status, display)."""
MODALITIES: dict[str, tuple[str, str, str]] = {
    "video": ("VR", "virtual", "Group video session"),
    "phone": ("VR", "virtual", "Group telephone session"),
    "chat": ("VR", "virtual", "Group text chat session"),
    "in-person": ("AMB", "ambulatory", "Group session in person"),
}
"""Modality -> (v3 ActCode class, its display, Encounter.type text)."""
SESSION_STATUSES = frozenset({"planned", "finished"})
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Participant:
    """One patient of a session and their attendance (None while the session is planned)."""

    patient_id: str
    encounter_id: str
    attendance: str | None
    left_at: datetime | None = None


@dataclass(frozen=True)
class GroupSession:
    """A group session as the service layer hands it over."""

    group_id: str
    encounter_id: str
    facilitator: tuple[str, str]  # (system, value) identifier of the facilitating clinician
    modality: str  # video | phone | chat | in-person
    status: str  # planned | finished
    start: datetime
    end: datetime | None
    participants: tuple[Participant, ...]


def _id(value: str, field: str) -> str:
    if not _FHIR_ID.fullmatch(value):
        raise MappingError(field, "must be a FHIR id (A-Z a-z 0-9 - . up to 64)")
    return value


def _facilitator(session: GroupSession) -> dict[str, Any]:
    system, value = session.facilitator
    return {"type": "Practitioner", "identifier": {"system": system, "value": value}}


def _period(start: datetime, end: datetime | None, where: str) -> dict[str, str]:
    period = {"start": fhir_datetime(start, "start")}
    if end is not None:
        if end < start:
            raise MappingError(where, "must not be before start")
        period["end"] = fhir_datetime(end, where)
    return period


def _modality(session: GroupSession) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = MODALITIES.get(session.modality)
    if spec is None:
        raise MappingError("modality", "must be one of " + ", ".join(MODALITIES))
    cls, display, text = spec
    return coding(V3_ACT_CODE, cls, display), {
        "coding": [coding(GROUP_MODALITY_SYSTEM, session.modality, text)],
        "text": text,
    }


def map_group(session: GroupSession) -> dict[str, Any]:
    """The validated Group of ``session``: its participants as members."""
    group: dict[str, Any] = {
        "resourceType": "Group",
        "id": _id(session.group_id, "group_id"),
        "identifier": [{"system": GROUP_IDENTIFIER_SYSTEM, "value": session.group_id}],
        "active": True,
        "type": "person",
        "actual": True,
        "quantity": len(session.participants),
        "managingEntity": _facilitator(session),
    }
    if session.participants:
        group["member"] = [
            {"entity": reference("Patient", _id(p.patient_id, "patient_id"))}
            for p in session.participants
        ]
    return checked(group)


def map_group_encounter(session: GroupSession) -> dict[str, Any]:
    """The validated Encounter of the whole session (subject: the Group).

    Raises MappingError (encounter_id, status, modality, start, end).
    """
    if session.status not in SESSION_STATUSES:
        raise MappingError("status", "must be one of " + ", ".join(sorted(SESSION_STATUSES)))
    cls, kind = _modality(session)
    encounter = {
        "resourceType": "Encounter",
        "id": _id(session.encounter_id, "encounter_id"),
        "identifier": [business_identifier("encounter", session.encounter_id)],
        "status": session.status,
        "class": cls,
        "type": [kind],
        "subject": reference("Group", session.group_id),
        "participant": [
            {
                "type": [
                    {
                        "coding": [coding(V3_PARTICIPATION_TYPE, "PPRF", "primary performer")],
                        "text": "facilitator",
                    }
                ],
                "individual": _facilitator(session),
            }
        ],
        "period": _period(session.start, session.end, "end"),
    }
    return checked(encounter)


def map_participant_encounter(session: GroupSession, participant: Participant) -> dict[str, Any]:
    """The validated Encounter of one participant, part of the group's Encounter.

    Raises MappingError (attendance, left_at, ...).
    """
    cls, kind = _modality(session)
    end = session.end
    if participant.attendance is None:
        if session.status != "planned":
            raise MappingError("attendance", "is required once the session is finished")
        status, types = "planned", [kind]
    else:
        if session.status == "planned":
            raise MappingError("attendance", "is only known once the session is finished")
        spec = ATTENDANCE.get(participant.attendance)
        if spec is None:
            raise MappingError("attendance", "must be one of " + ", ".join(ATTENDANCE))
        status, display = spec
        attendance = {
            "coding": [coding(ATTENDANCE_SYSTEM, participant.attendance, display)],
            "text": display,
        }
        types = [kind, attendance]
        if participant.left_at is not None:
            if participant.attendance != "left-early":
                raise MappingError("left_at", "is only for a participant who left early")
            if session.end is not None and participant.left_at > session.end:
                raise MappingError("left_at", "must not be after the session's end")
            end = participant.left_at
    encounter = {
        "resourceType": "Encounter",
        "id": _id(participant.encounter_id, "encounter_id"),
        "identifier": [business_identifier("encounter", participant.encounter_id)],
        "status": status,
        "class": cls,
        "type": types,
        "subject": reference("Patient", _id(participant.patient_id, "patient_id")),
        "participant": [
            {
                "type": [
                    {
                        "coding": [coding(V3_PARTICIPATION_TYPE, "PPRF", "primary performer")],
                        "text": "facilitator",
                    }
                ],
                "individual": _facilitator(session),
            }
        ],
        "period": _period(session.start, end, "left_at" if participant.left_at else "end"),
        "partOf": reference("Encounter", session.encounter_id),
    }
    return checked(encounter)


def group_provenance_id(encounter_id: str, activity: str) -> str:
    """The id of the Provenance of ``activity`` on the session whose Encounter is ``encounter_id``.

    Fixed by the session and the activity, so a retry finds it instead of writing another.
    """
    return deterministic_id(f"{encounter_id}/{activity}", "group-provenance")


def map_group_provenance(
    session: GroupSession,
    targets: list[str],
    recorded: datetime,
    client_id: str,
    activity: str = "CREATE",
) -> dict[str, Any]:
    """A validated Provenance of one write of ``session`` (``targets``: what it wrote).

    agent[0] is the app client that sent the session (``assembler``, a Device known by its
    client id), agent[1] the facilitator (``performer``, a Practitioner by identifier). The
    business identifier travels in careloop's ``business-identifier`` extension (R4 Provenance
    has no identifier). Raises MappingError (targets, activity, recorded).
    """
    if not targets or any("/" not in t for t in targets):
        raise MappingError("targets", "needs target references like Type/id")
    provenance_id = group_provenance_id(session.encounter_id, activity)
    agents = [app_client_agent(client_id), agent("performer", _facilitator(session))]
    return checked(
        provenance_resource(provenance_id, provenance_id, targets, recorded, activity, agents)
    )


def attendance_of(encounter: dict[str, Any]) -> str | None:
    """The careloop attendance code of a participant Encounter, or None."""
    for concept in encounter.get("type") or []:
        if not isinstance(concept, dict):
            continue
        for item in concept.get("coding") or []:
            if isinstance(item, dict) and item.get("system") == ATTENDANCE_SYSTEM:
                code = item.get("code")
                return code if isinstance(code, str) else None
    return None
