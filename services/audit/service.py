"""Recording who read what and who did what (ids only); egress: egress_guard.py, writes:
writes.py."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session

from careloop.services.audit.models import AuditRecord
from careloop.services.auth.tokens import Principal
from careloop.services.clinicians.models import Clinician
from careloop.services.unit_of_work import commit

MAX_ENTITIES = 100
_COVERED = "careloop_audit_covered"
"""Key in ``session.info`` of the references this transaction's events already name."""


def entity_text(references: Iterable[str]) -> str:
    """``references`` space-separated, the first MAX_ENTITIES of them and how many more."""
    refs = list(references)
    entity = " ".join(refs[:MAX_ENTITIES])
    if len(refs) > MAX_ENTITIES:
        entity += f" (+{len(refs) - MAX_ENTITIES} more)"
    return entity


def record_access(
    session: Session, principal: Principal, references: Iterable[str], query: str = ""
) -> None:
    """Audit a read or search by ``principal`` and commit it (ids only, never content)."""
    entity = entity_text(references)
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


SYSTEM_TENANT = "_system"
"""The chain of events no tenant can be told yet (a token request from an unknown client)."""


def record_event(
    session: Session,
    tenant_id: str | None,
    kind: str,
    agent: str,
    outcome: str,
    entity: str = "",
    action: str = "E",
) -> None:
    """Audit a token grant or refusal, a sign-in, an alert's acknowledgement or an admin
    action (ids only, never content).

    Added to ``session``: it commits with the caller's unit of work, whose store writes of the
    resources ``entity`` names are then not audited again as writes (``covered``).
    """
    session.add(
        AuditRecord(
            tenant_id=tenant_id or SYSTEM_TENANT,
            kind=kind,
            action=action,
            agent=agent[:200],
            entity=entity,
            outcome=outcome,
        )
    )
    session.info.setdefault(_COVERED, set()).update(r for r in entity.split(" ") if "/" in r)


def covered(session: Session) -> set[str]:
    """The references this transaction's events (``record_event``) already name."""
    refs: set[str] = session.info.get(_COVERED, set())
    return refs


@event.listens_for(OrmSession, "after_commit")
@event.listens_for(OrmSession, "after_rollback")
def _forget_covered(session: OrmSession, *_args: Any) -> None:
    session.info.pop(_COVERED, None)


def record_admin(session: Session, principal: Principal, operation: str, *ids: str) -> None:
    """Audit an admin API call of ``principal`` (kind ``admin``): ``api:<operation>`` and the
    ids it touched (never addresses, names or secrets). Commits with the caller's unit of work."""
    entity = " ".join([f"api:{operation}", *ids])
    record_event(
        session, principal.tenant_id, "admin", f"client:{principal.client_id}", "success", entity
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:~-]")


def record_token(
    session: Session, tenant_id: str | None, client_id: str | None, granted: bool
) -> None:
    """Audit a token grant or refusal (``client_id`` as claimed; unknown clients: no tenant)."""
    outcome = "success" if granted else "refused"
    # As claimed: a refused request's client_id can be anything (NUL bytes PostgreSQL refuses).
    claimed = _UNSAFE.sub("?", client_id or "?")[:64]
    record_event(session, tenant_id, "token", f"client:{claimed}", outcome)


def record_sign_in(session: Session, clinician: Clinician | None, signed_in: bool) -> None:
    """Audit a clinician's sign-in (an unknown email: no tenant, and the email is not kept)."""
    tenant_id, who = (clinician.tenant_id, clinician.id) if clinician else (None, "?")
    outcome = "success" if signed_in else "refused"
    record_event(session, tenant_id, "sign-in", f"clinician:{who}", outcome)
