"""Recording group sessions: find or create the patients, map to FHIR, store once, record events.

A session's resource ids derive from the app's ``app_session_id`` (scoped by tenant and client),
so they are fixed before anything is stored: a retry, here or in a concurrent request (whose
unique-key collision makes the unit of work run again), finds the group's Encounter and answers
with it; nothing is stored twice. Each write also stores one Provenance (CREATE, or UPDATE when a
planned session is recorded as held) whose id derives from the session and the activity.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from careloop.fhir.errors import MappingError
from careloop.fhir.groups import (
    GroupSession,
    Participant,
    attendance_of,
    map_group,
    map_group_encounter,
    map_group_provenance,
    map_participant_encounter,
)
from careloop.fhir.identifiers import deterministic_id
from careloop.services.auth.tokens import Principal
from careloop.services.common.errors import ApiError, Issue, json_path
from careloop.services.db import utcnow
from careloop.services.ehr.pushes import resources_changed
from careloop.services.groups.schemas import GroupSessionIn
from careloop.services.outbox.events import ReadingCreated, ReadingTriage
from careloop.services.outbox.record import TRIAGE_KEY, record
from careloop.services.patients.service import create_patients, find_patients
from careloop.services.store.repository import ResourceStore

Ident = tuple[str, str]


@dataclass
class SessionOutcome:
    """A recorded session (201) or a recognised retry (200)."""

    status: int
    session_id: str
    group: str
    encounter: str
    participants: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The public JSON of this outcome: references only."""
        return {
            "id": self.session_id,
            "group": self.group,
            "encounter": self.encounter,
            "participants": self.participants,
        }


def session_id_of(principal: Principal, app_session_id: str) -> str:
    """The careloop id of the app's session ``app_session_id`` (a retry gives the same)."""
    seed = f"{principal.tenant_id}|{principal.client_id}|group-session|{app_session_id}"
    return deterministic_id(seed, "group-session")


def _ids(session_id: str) -> tuple[str, str]:
    return deterministic_id(session_id, "group"), deterministic_id(session_id, "group-encounter")


def _participant_encounter_id(session_id: str, patient_id: str) -> str:
    return deterministic_id(f"{session_id}/{patient_id}", "participant-encounter")


def _check(data: GroupSessionIn) -> list[Ident]:
    idents = [(p.patient.system, p.patient.value) for p in data.participants]
    seen: set[Ident] = set()
    for i, ident in enumerate(idents):
        if ident in seen:
            raise ApiError.invalid(
                json_path(("participants", i, "patient")), "the patient is listed twice"
            )
        seen.add(ident)
    if data.end is not None and data.end < data.start:
        raise ApiError.invalid("end", "must not be before start")
    for i, p in enumerate(data.participants):
        where = ("participants", i)
        if data.status == "finished" and p.attendance is None:
            raise ApiError.invalid(
                json_path((*where, "attendance")), "is required once the session is finished"
            )
        if data.status == "planned" and p.attendance is not None:
            raise ApiError.invalid(
                json_path((*where, "attendance")), "is only known once the session is finished"
            )
        if p.left_at is not None:
            if p.attendance != "left-early":
                raise ApiError.invalid(
                    json_path((*where, "left_at")), "is only for a participant who left early"
                )
            if p.left_at < data.start or (data.end is not None and p.left_at > data.end):
                raise ApiError.invalid(
                    json_path((*where, "left_at")), "must be within the session's start and end"
                )
    return idents


def _mapped(
    session_id: str, data: GroupSessionIn, patients: list[str]
) -> tuple[GroupSession, list[dict[str, Any]]]:
    group_id, encounter_id = _ids(session_id)
    participants = tuple(
        Participant(pid, _participant_encounter_id(session_id, pid), p.attendance, p.left_at)
        for pid, p in zip(patients, data.participants, strict=True)
    )
    mapped = GroupSession(
        group_id=group_id,
        encounter_id=encounter_id,
        facilitator=(data.facilitator.system, data.facilitator.value),
        modality=data.modality,
        status=data.status,
        start=data.start,
        end=data.end,
        participants=participants,
    )
    try:
        resources = [map_group(mapped), map_group_encounter(mapped)]
        resources += [map_participant_encounter(mapped, p) for p in participants]
    except MappingError as exc:
        raise ApiError.invalid(exc.field, exc.message) from exc
    return mapped, resources


def _outcome(status: int, session_id: str, mapped: GroupSession) -> SessionOutcome:
    return SessionOutcome(
        status,
        session_id,
        f"Group/{mapped.group_id}",
        f"Encounter/{mapped.encounter_id}",
        [
            {
                "patient": f"Patient/{p.patient_id}",
                "encounter": f"Encounter/{p.encounter_id}",
                "attendance": p.attendance,
            }
            for p in mapped.participants
        ],
    )


def record_session(session: Session, principal: Principal, data: GroupSessionIn) -> SessionOutcome:
    """Record ``data`` in the caller's unit of work (the caller commits).

    A session already recorded under the same app_session_id is answered with what it created
    (200), or refused with 409 when the content differs, except that a planned session may be
    posted again as finished, with its attendance (and actual times): its Encounters gain a
    version (200). Each no-show becomes an event the care
    program judges (the missed group session rule).
    """
    idents = _check(data)
    store = ResourceStore(session, principal.tenant_id)
    session_id = session_id_of(principal, data.app_session_id)
    _, encounter_id = _ids(session_id)
    # The session first, then its patients: committed together, so once the session is visible
    # its patients are too (the other order can straddle a concurrent first's commit).
    existing = store.read("Encounter", encounter_id)
    known = find_patients(session, principal.tenant_id, idents)
    if existing is not None:
        return _retry(session, principal, store, session_id, data, idents, known)
    new = {i: str(uuid.uuid4()) for i in idents if i not in known}
    if new:
        create_patients(session, store, new)
    patients = [known.get(i) or new[i] for i in idents]
    mapped, resources = _mapped(session_id, data, patients)
    store.create_many([*resources, _provenance(principal, mapped, resources, "CREATE")])
    _recorded(session, principal, mapped, resources)
    return _outcome(201, session_id, mapped)


def _provenance(
    principal: Principal, mapped: GroupSession, written: list[dict[str, Any]], activity: str
) -> dict[str, Any]:
    """The Provenance of one write: what it wrote, the app client and the facilitator."""
    targets = [f"{r['resourceType']}/{r['id']}" for r in written]
    try:
        return map_group_provenance(mapped, targets, utcnow(), principal.client_id, activity)
    except MappingError as exc:
        raise ApiError.invalid(exc.field, exc.message) from exc


def _recorded(
    session: Session, principal: Principal, mapped: GroupSession, resources: list[dict[str, Any]]
) -> None:
    """Have each no-show judged and each participant's Encounter pushed to their chart."""
    triage: ReadingTriage | None = session.info.get(TRIAGE_KEY)
    by_patient: dict[str, list[str]] = {}
    for participant, encounter in zip(mapped.participants, resources[2:], strict=True):
        by_patient[participant.patient_id] = [f"Encounter/{participant.encounter_id}"]
        if participant.attendance == "no-show":
            # Judged by the rule engine as a reading is: the event names the Encounter.
            urgent = bool(triage(encounter)) if triage is not None else None
            reference = f"Encounter/{participant.encounter_id}"
            record(
                session,
                principal.tenant_id,
                ReadingCreated(principal.tenant_id, reference, urgent),
            )
    resources_changed(session, principal.tenant_id, by_patient)


def _unchanged(
    current: dict[str, dict[str, Any]], resources: list[dict[str, Any]], *drop: str
) -> bool:
    def kept(resource: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in resource.items() if k not in ("meta", *drop)}

    return all(
        kept(current.get(f"{r['resourceType']}/{r['id']}", {})) == kept(r) for r in resources
    )


def _completes(
    session_id: str,
    data: GroupSessionIn,
    patients: list[str],
    current: dict[str, dict[str, Any]],
) -> bool:
    """Whether ``data`` records the attendance of the planned session stored as ``current``."""
    if data.status != "finished":
        return False
    planned = data.model_copy(
        update={
            "status": "planned",
            "participants": [
                p.model_copy(update={"attendance": None, "left_at": None})
                for p in data.participants
            ],
        }
    )
    try:
        _, resources = _mapped(session_id, planned, patients)
    except ApiError:
        return False
    return _unchanged(current, resources, "period")


def _retry(
    session: Session,
    principal: Principal,
    store: ResourceStore,
    session_id: str,
    data: GroupSessionIn,
    idents: list[Ident],
    known: dict[Ident, str],
) -> SessionOutcome:
    """A retry (200), a planned session's attendance (200, new versions), or a 409."""
    same = all(i in known for i in idents)
    mapped: GroupSession | None = None
    if same:
        patients = [known[i] for i in idents]
        try:
            mapped, resources = _mapped(session_id, data, patients)
        except ApiError:
            same = False
        else:
            stored = store.read_many(f"{r['resourceType']}/{r['id']}" for r in resources)
            current = {s.reference: s.as_dict() for s in stored}
            same = _unchanged(current, resources)
            if not same and _completes(session_id, data, patients, current):
                for resource in resources[1:]:
                    store.update(resource)
                store.create_many([_provenance(principal, mapped, resources[1:], "UPDATE")])
                _recorded(session, principal, mapped, resources)
                return _outcome(200, session_id, mapped)
    if not same or mapped is None:
        raise ApiError(
            409,
            [
                Issue(
                    "duplicate",
                    f"a different group session with this app_session_id was already recorded "
                    f"as {session_id}",
                    "app_session_id",
                )
            ],
        )
    return _outcome(200, session_id, mapped)


def read_session(session: Session, principal: Principal, session_id: str) -> SessionOutcome:
    """A recorded session of the caller's tenant, or 404."""
    store = ResourceStore(session, principal.tenant_id)
    group_id, encounter_id = _ids(session_id)
    group = store.read("Group", group_id)
    if group is None or store.read("Encounter", encounter_id) is None:
        raise ApiError.not_found(f"group session {session_id}")
    members = [
        str(m["entity"]["reference"]).removeprefix("Patient/")
        for m in group.as_dict().get("member", [])
    ]
    encounters = store.read_many(
        f"Encounter/{_participant_encounter_id(session_id, pid)}" for pid in members
    )
    by_id = {e.as_dict()["id"]: attendance_of(e.as_dict()) for e in encounters}
    participants = [
        {
            "patient": f"Patient/{pid}",
            "encounter": f"Encounter/{_participant_encounter_id(session_id, pid)}",
            "attendance": by_id.get(_participant_encounter_id(session_id, pid)),
        }
        for pid in members
    ]
    return SessionOutcome(
        200, session_id, f"Group/{group_id}", f"Encounter/{encounter_id}", participants
    )
