"""Auditing what a unit of work wrote to the resource store: one entry per written set.

Called once per API unit of work, just before its commit (``run_unit_of_work``): the store's
notes of the transaction (``careloop.services.store.written``) become at most two entries per
tenant, ``create`` (action C) for the resources it created and ``update`` (U) for the ones it
changed, each naming the written references and their patients, never content. Resources an
event of the same transaction already names (an alert's acknowledgement names its Task, a
consent change its Consent) are not recorded twice.
"""

from __future__ import annotations

from sqlmodel import Session

from careloop.services.audit.models import AuditRecord
from careloop.services.audit.service import covered, entity_text
from careloop.services.store.written import Written, take_written


def _entity(writes: dict[str, Written]) -> str:
    # The patients first: a long Bundle's list is cut at MAX_ENTITIES, its patients kept.
    patients = dict.fromkeys(f"Patient/{w.patient_id}" for w in writes.values() if w.patient_id)
    return entity_text([*patients, *(ref for ref in writes if ref not in patients)])


def record_writes(session: Session, agent: str) -> int:
    """Audit the store writes of ``session``'s transaction by ``agent``; how many entries."""
    done = covered(session)
    entries = 0
    for tenant_id, written in take_written(session).items():
        fresh = {ref: w for ref, w in written.items() if ref not in done}
        for kind, action, created in (("create", "C", True), ("update", "U", False)):
            chosen = {ref: w for ref, w in fresh.items() if w.created is created}
            if not chosen:
                continue
            session.add(
                AuditRecord(
                    tenant_id=tenant_id,
                    kind=kind,
                    action=action,
                    agent=agent[:200],
                    entity=_entity(chosen),
                    outcome="success",
                )
            )
            entries += 1
    return entries
