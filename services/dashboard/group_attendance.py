"""A patient's group sessions and their attendance, for the patient page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from careloop.fhir.groups import ATTENDANCE, MODALITIES, attendance_of
from careloop.services.store.repository import ResourceStore

SHOWN = 20
"""Most recent sessions shown."""
_PLANNED = "Planned"


@dataclass(frozen=True)
class Attendance:
    """One group session of the patient: when, how, and whether they came."""

    start: datetime | None
    modality: str
    attendance: str
    """attended | left-early | no-show | planned"""
    label: str
    encounter: str


def _start(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def group_attendance(session: Session, tenant_id: str, patient_id: str) -> list[Attendance]:
    """The patient's group sessions (participant Encounters), newest first."""
    found = []
    for stored in ResourceStore(session, tenant_id).for_patient("Encounter", patient_id):
        encounter = stored.as_dict()
        if "partOf" not in encounter:
            continue  # a one-to-one telehealth session, not a group's
        code = attendance_of(encounter)
        modality = next(
            (
                str(c.get("code"))
                for t in encounter.get("type") or []
                for c in t.get("coding") or []
                if str(c.get("code")) in MODALITIES
            ),
            "",
        )
        found.append(
            Attendance(
                start=_start((encounter.get("period") or {}).get("start")),
                modality=modality,
                attendance=code or "planned",
                label=ATTENDANCE[code][1] if code in ATTENDANCE else _PLANNED,
                encounter=stored.reference,
            )
        )
    found.reverse()  # oldest date first from the store
    return found[:SHOWN]
