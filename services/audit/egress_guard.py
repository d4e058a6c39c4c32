"""The egress gate's consent lookup and audit sink, on a database session."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlmodel import Session

from careloop.integrations.egress import (
    DEFAULT_POLICY,
    Decision,
    EgressEvent,
    Guard,
    denying_consent,
)
from careloop.services.audit.models import AuditRecord
from careloop.services.store.repository import ResourceStore, StoredResource

MAX_ENTITIES = 100


def session_guard(
    session: Session,
    tenant_id: str,
    agent: str,
    defaults: Mapping[str, Decision] = DEFAULT_POLICY,
) -> Guard:
    """A `Guard` reading the tenant's Consents and adding audit records to ``session``.

    Consents are read at each check (send time); ``defaults`` is the tenant policy for a patient
    none of whose Consents decides the purpose (services/consents/policy.py).
    """
    store = ResourceStore(session, tenant_id)
    read: dict[str, list[StoredResource]] = {}
    """Consents read at once for a Bundle's patients, kept for this unit of work only."""

    def prefetch(patient_ids: Sequence[str]) -> None:
        wanted = [p for p in dict.fromkeys(patient_ids) if p not in read]
        if wanted:
            read.update(store.for_patients("Consent", wanted))

    def consent(patient_id: str, purpose: str) -> str | None:
        stored = read.pop(patient_id, None)  # a prefetched read serves one check, then re-read
        if stored is None:
            stored = store.for_patient("Consent", patient_id)
        return denying_consent(((s.id, s.as_dict()) for s in stored), purpose, defaults)

    def audit(event: EgressEvent) -> None:
        disclosure = event.disclosure
        entities = (
            [f"Patient/{disclosure.patient_id}", *disclosure.entities[:MAX_ENTITIES]]
            if disclosure is not None
            else []
        )
        session.add(
            AuditRecord(
                tenant_id=event.tenant_id,
                kind="egress",
                action="E",
                agent=event.agent,
                purpose=disclosure.purpose if disclosure is not None else "",
                entity=" ".join(entities) or (event.reason or ""),
                destination=event.destination,
                outcome=event.outcome,
            )
        )

    return Guard(tenant_id, agent, consent, audit, prefetch)
