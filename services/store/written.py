"""What a transaction wrote to the resource store: references, created or updated, per tenant.

The store notes every write in ``session.info``; whoever audits the unit of work takes the
notes before it commits (``take_written``). Notes a commit or a rollback ends are dropped, so a
retried unit of work starts clean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession

_KEY = "careloop_written"


@dataclass
class Written:
    """One written resource: created in this transaction (else updated), and its patient."""

    created: bool
    patient_id: str | None


WrittenByTenant = dict[str, dict[str, Written]]
"""tenant id -> reference (``Type/id``) -> what happened to it, in the order written."""


def note_written(
    session: OrmSession, tenant_id: str, writes: Iterable[tuple[str, str | None]], created: bool
) -> None:
    """Note ``writes`` (reference, patient id); a resource created here stays ``created``."""
    noted: WrittenByTenant = session.info.setdefault(_KEY, {})
    refs = noted.setdefault(tenant_id, {})
    for ref, patient_id in writes:
        known = refs.get(ref)
        if known is None:
            refs[ref] = Written(created, patient_id)
        elif patient_id:
            known.patient_id = patient_id


def take_written(session: OrmSession) -> WrittenByTenant:
    """The writes noted since the last commit, rollback or take (forgotten here)."""
    taken: WrittenByTenant = session.info.pop(_KEY, {})
    return taken


@event.listens_for(OrmSession, "after_commit")
@event.listens_for(OrmSession, "after_rollback")
def _forget(session: OrmSession, *_args: Any) -> None:
    session.info.pop(_KEY, None)
