"""A patient's latest PHQ-9 and GAD-7 totals and the one before, read with bounded queries."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import select
from sqlmodel import Session

from careloop.fhir.terminology import LOINC
from careloop.services.store.models import FhirResource, SearchToken

PHQ9_TOTAL = "44261-6"
GAD7_TOTAL = "70274-6"
_R = FhirResource.__table__  # type: ignore[attr-defined]
_T = SearchToken.__table__  # type: ignore[attr-defined]
_LOOK_AT = 4
"""Newest Observations read per code: the latest two usable ones are among them."""
_UNUSABLE = {"entered-in-error", "cancelled", "preliminary", "registered"}


@dataclass(frozen=True)
class Score:
    """The latest total of one questionnaire and the previous one (if any)."""

    instrument: str
    total: int
    previous: int | None

    @property
    def change(self) -> int | None:
        """Points since the previous total (positive is worse)."""
        return None if self.previous is None else self.total - self.previous


def _totals(session: Session, tenant_id: str, patient_id: str, code: str) -> list[int]:
    rows = session.execute(
        select(_R.c.content)
        .where(
            _R.c.tenant_id == tenant_id,
            _R.c.resource_type == "Observation",
            _R.c.patient_id == patient_id,
            _R.c.date_lo.is_not(None),
            select(_T.c.id)
            .where(
                _T.c.resource_seq == _R.c.seq,
                _T.c.tenant_id == tenant_id,
                _T.c.resource_type == "Observation",
                _T.c.param == "code",
                _T.c.system == LOINC,
                _T.c.code == code,
            )
            .exists(),
        )
        # date_lo alone (no tie-breaker): the patient index is read backwards and the scan stops
        # at the first matches, whatever the planner's statistics say.
        .order_by(_R.c.date_lo.desc())
        .limit(_LOOK_AT)
    ).all()
    totals = []
    for row in rows:
        observation = orjson.loads(row.content)
        value = observation.get("valueInteger")
        if observation.get("status") in _UNUSABLE or not isinstance(value, int):
            continue
        totals.append(value)
    return totals[:2]


def latest_scores(session: Session, tenant_id: str, patient_id: str) -> list[Score]:
    """The PHQ-9 and GAD-7 the patient has reported, newest total first with the previous."""
    scores = []
    for instrument, code in (("PHQ-9", PHQ9_TOTAL), ("GAD-7", GAD7_TOTAL)):
        totals = _totals(session, tenant_id, patient_id, code)
        if totals:
            scores.append(Score(instrument, totals[0], totals[1] if len(totals) > 1 else None))
    return scores
