"""The one way data leaves careloop: consent is checked and every attempt audited here.

Every channel (webhook, email, EHR sync, CDS cards, exports) sends through ``send``; nothing else
in careloop opens a connection to carry patient data out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from sqlmodel import Session

from careloop.services.audit.models import AuditRecord
from careloop.services.store.repository import ResourceStore

T = TypeVar("T")
TREATMENT = "TREAT"
"""v3-ActReason purpose of use for care-team alerts and EHR sync."""


class EgressBlocked(Exception):
    """The patient's Consent forbids this data leaving for this purpose."""


@dataclass(frozen=True)
class Egress:
    """One outbound transfer: whose data, which resources, where to and why."""

    tenant_id: str
    patient_id: str
    entities: tuple[str, ...]
    channel: str
    destination: str
    agent: str
    purpose: str = TREATMENT


def _provision_denies(provision: dict[str, object], purpose: str) -> bool:
    if provision.get("type") != "deny":
        return False
    purposes = provision.get("purpose") or []
    codes = (
        {p.get("code") for p in purposes if isinstance(p, dict)}
        if isinstance(purposes, list)
        else set()
    )
    return not codes or purpose in codes


def consent_denies(store: ResourceStore, patient_id: str, purpose: str) -> str | None:
    """The id of an active Consent that denies sharing for ``purpose``, if any.

    A Consent whose top-level provision (or a nested one) is ``deny`` with no purpose, or with
    this purpose, blocks. careloop errs on the side of the patient's refusal.
    """
    for stored in store.for_patient("Consent", patient_id):
        consent = stored.as_dict()
        if consent.get("status") != "active":
            continue
        provision = consent.get("provision") or {}
        nested = provision.get("provision") or []
        if _provision_denies(provision, purpose) or any(
            _provision_denies(p, purpose) for p in nested if isinstance(p, dict)
        ):
            return stored.id
    return None


def _host(destination: str) -> str:
    parts = urlsplit(destination)
    return parts.netloc or destination.split("@")[-1]


def send(
    session: Session, egress: Egress, transfer: Callable[[], T], succeeded: Callable[[T], bool]
) -> T:
    """Run ``transfer`` if consent allows, and audit the attempt either way.

    Raises EgressBlocked (audited as ``blocked``) when a Consent denies it.
    """
    store = ResourceStore(session, egress.tenant_id)
    record = AuditRecord(
        tenant_id=egress.tenant_id,
        kind="egress",
        action="E",
        agent=egress.agent,
        purpose=egress.purpose,
        entity=" ".join((f"Patient/{egress.patient_id}", *egress.entities)),
        destination=f"{egress.channel}:{_host(egress.destination)}",
        outcome="blocked",
    )
    denying = consent_denies(store, egress.patient_id, egress.purpose)
    if denying is not None:
        session.add(record)
        raise EgressBlocked(f"Consent/{denying} denies {egress.purpose}")
    result = transfer()
    record.outcome = "success" if succeeded(result) else "failed"
    session.add(record)
    return result
