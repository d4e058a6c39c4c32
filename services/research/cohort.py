"""Which patients the research export may carry: each one's consent, decided and audited once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from careloop.integrations.egress import RESEARCH_EXPORT, TENANT_POLICY, Decision, Disclosure
from careloop.services.audit.egress_guard import session_guard
from careloop.services.store.models import FhirResource
from careloop.services.unit_of_work import session_scope

_R = FhirResource.__table__  # type: ignore[attr-defined]
AGENT = "cli:export"
DESTINATION = "research-export:file"


@dataclass
class Cohort:
    """The patients whose consent permits the export (ids only) and how many were withheld."""

    permitted: set[str] = field(default_factory=set)
    withheld: int = 0


def _patient_batches(engine: Engine, tenant_id: str, size: int) -> Iterator[list[str]]:
    """The tenant's Patient ids in ``seq`` order, ``size`` at a time."""
    after = 0
    while True:
        with engine.connect() as connection:
            rows = connection.execute(
                select(_R.c.seq, _R.c.id)
                .where(
                    _R.c.tenant_id == tenant_id,
                    _R.c.resource_type == "Patient",
                    _R.c.seq > after,
                )
                .order_by(_R.c.seq)
                .limit(size)
            ).all()
        if not rows:
            return
        after = rows[-1].seq
        yield [r.id for r in rows]


def decide_cohort(
    engine: Engine, tenant_id: str, defaults: dict[str, Decision], batch: int = 500
) -> Cohort:
    """Ask each Patient's consent for `RESEARCH_EXPORT` and audit the answer, a batch a commit.

    A permitted patient is audited ``success`` (their data goes into the files), a withheld one
    ``blocked`` with the deciding Consent or the tenant policy as the reason.
    """
    cohort = Cohort()
    for patient_ids in _patient_batches(engine, tenant_id, batch):
        with session_scope(engine) as session:
            guard = session_guard(session, tenant_id, AGENT, defaults)
            guard.prefetch(patient_ids)
            for patient_id in patient_ids:
                disclosure = Disclosure(patient_id, purpose=RESEARCH_EXPORT)
                denying = guard.consent(patient_id, RESEARCH_EXPORT)
                if denying is None:
                    cohort.permitted.add(patient_id)
                    guard.record(DESTINATION, "success", disclosure)
                else:
                    cohort.withheld += 1
                    reason = denying if denying == TENANT_POLICY else f"Consent/{denying}"
                    guard.record(DESTINATION, "blocked", disclosure, reason)
    return cohort
