"""Recording who read what (access audit); egress: egress_guard.py."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session

from careloop.services.audit.models import AuditRecord
from careloop.services.auth.tokens import Principal
from careloop.services.unit_of_work import commit

MAX_ENTITIES = 100


def record_access(
    session: Session, principal: Principal, references: Iterable[str], query: str = ""
) -> None:
    """Audit a read or search by ``principal`` and commit it (ids only, never content)."""
    refs = list(references)
    entity = " ".join(refs[:MAX_ENTITIES])
    if len(refs) > MAX_ENTITIES:
        entity += f" (+{len(refs) - MAX_ENTITIES} more)"
    session.add(
        AuditRecord(
            tenant_id=principal.tenant_id,
            kind="access",
            action="R",
            agent=f"client:{principal.client_id}",
            entity=entity or query,
            destination=query[:300],
            outcome="success",
        )
    )
    commit(session)
