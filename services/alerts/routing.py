"""Who hears about an alert: the patient's care team in order, then the tenant's on-call."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from careloop.services.alerts.models import NotificationRoute
from careloop.services.alerts.vocabulary import severity_rank
from careloop.services.store.repository import ResourceStore

ONCALL = "oncall"


@dataclass(frozen=True)
class Target:
    """One place to send one notification."""

    recipient: str
    channel: str
    address: str
    secret: str | None


def _practitioner_of(store: ResourceStore, reference: str) -> str | None:
    if reference.startswith("Practitioner/"):
        return reference
    if reference.startswith("PractitionerRole/"):
        role = store.read("PractitionerRole", reference.removeprefix("PractitionerRole/"))
        if role is not None:
            data = role.as_dict()
            if data.get("active", True):
                target = (data.get("practitioner") or {}).get("reference", "")
                return target if target.startswith("Practitioner/") else None
    return None


def care_team_chain(store: ResourceStore, patient_id: str) -> list[str]:
    """Practitioners of the patient's active care teams, in the order listed.

    A participant may be a Practitioner or a PractitionerRole (its practitioner is notified).
    """
    chain: list[str] = []
    for team in store.for_patient("CareTeam", patient_id):
        data = team.as_dict()
        if data.get("status", "active") not in ("active", "proposed"):
            continue
        for participant in data.get("participant", []):
            reference = (participant.get("member") or {}).get("reference", "")
            practitioner = _practitioner_of(store, reference)
            if practitioner and practitioner not in chain:
                chain.append(practitioner)
    return chain


def _routes(session: Session, tenant_id: str, recipient: str, severity: str) -> list[Target]:
    rows = session.exec(
        select(NotificationRoute).where(
            NotificationRoute.tenant_id == tenant_id, NotificationRoute.recipient == recipient
        )
    ).all()
    return [
        Target(recipient, r.channel, r.address, r.secret)
        for r in sorted(rows, key=lambda r: r.id)
        if severity_rank(severity) >= severity_rank(r.min_severity)
    ]


def targets_for(
    session: Session, store: ResourceStore, patient_id: str, severity: str, level: int
) -> tuple[list[Target], str | None]:
    """Where to notify at escalation ``level`` (0 = first), and the owner to record.

    Level 0 reaches the first clinician of the care team and the on-call channel (which hears
    every alert); each later level reaches the next clinician; past the end of the chain, on-call
    again. A clinician without routes is skipped (they still see the inbox).
    """
    chain = care_team_chain(store, patient_id)
    oncall = _routes(session, store.tenant_id, ONCALL, severity)
    if level < len(chain):
        owner = chain[level]
        clinician = _routes(session, store.tenant_id, owner, severity)
        return (clinician + oncall if level == 0 else clinician or oncall), owner
    return oncall, None
