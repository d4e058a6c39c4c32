"""Reading a patient's scores and plans from the store, always bounded by time or count.

Every query names the tenant, the patient and a row limit, so a page or an API call costs the
same for a patient with two years of daily reports as for one with a week.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlmodel import Session

from careloop.fhir.terminology import LOINC
from careloop.services.common.fhirtime import FhirTimeError, parse_fhir_datetime_range
from careloop.services.store.models import FhirResource, SearchToken

_R = FhirResource.__table__  # type: ignore[attr-defined]
_T = SearchToken.__table__  # type: ignore[attr-defined]
_NOT_RESULTS = ("entered-in-error", "cancelled")
MAX_PLANS = 20
"""CarePlans (or Goals) of one patient read at most."""


@dataclass(frozen=True)
class Reading:
    """One Observation's time, value and component values (by component code)."""

    observation_id: str
    when: datetime
    value: float | None
    components: dict[str, float] = field(default_factory=dict)


def _number(element: dict[str, Any]) -> float | None:
    for key in ("valueInteger", "valueDecimal"):
        value = element.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    quantity = element.get("valueQuantity")
    if isinstance(quantity, dict):
        value = quantity.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _reading(rid: str, when: datetime, content: str) -> Reading | None:
    observation = orjson.loads(content)
    if observation.get("status") in _NOT_RESULTS:
        return None
    components: dict[str, float] = {}
    for component in observation.get("component") or []:
        value = _number(component)
        for coding in (component.get("code") or {}).get("coding") or []:
            if value is not None and isinstance(coding.get("code"), str):
                components[coding["code"]] = value
    return Reading(rid, when, _number(observation), components)


def readings(
    session: Session,
    tenant_id: str,
    patient_id: str,
    code: str,
    *,
    system: str = LOINC,
    since: datetime | None = None,
    limit: int,
    oldest: bool = False,
) -> list[Reading]:
    """Up to ``limit`` of the patient's Observations coded ``system|code``, oldest first.

    The newest ``limit`` on or after ``since`` are taken, or with ``oldest`` the first ones.
    """
    query = (
        select(_R.c.id, _R.c.date_lo, _R.c.content)
        .join(_T, _T.c.resource_seq == _R.c.seq)
        .where(
            _R.c.tenant_id == tenant_id,
            _R.c.resource_type == "Observation",
            _R.c.patient_id == patient_id,
            _R.c.date_lo.is_not(None),
            _T.c.tenant_id == tenant_id,
            _T.c.resource_type == "Observation",
            _T.c.param == "code",
            _T.c.system == system,
            _T.c.code == code,
        )
    )
    if since is not None:
        query = query.where(_R.c.date_lo >= since)
    order = (_R.c.date_lo, _R.c.seq) if oldest else (_R.c.date_lo.desc(), _R.c.seq.desc())
    rows = session.execute(query.order_by(*order).limit(limit)).all()
    found = [_reading(r.id, r.date_lo, r.content) for r in rows]
    result = [r for r in found if r is not None]
    return result if oldest else result[::-1]


def patient_resources(
    session: Session,
    tenant_id: str,
    resource_type: str,
    patient_id: str,
    *,
    since: datetime | None = None,
    limit: int = MAX_PLANS,
) -> list[dict[str, Any]]:
    """Up to ``limit`` current resources of the patient's compartment, newest date first."""
    query = select(_R.c.content).where(
        _R.c.tenant_id == tenant_id,
        _R.c.resource_type == resource_type,
        _R.c.patient_id == patient_id,
    )
    if since is not None:
        query = query.where(_R.c.date_hi >= since)
    rows = session.execute(
        query.order_by(_R.c.date_lo.desc(), _R.c.seq.desc()).limit(limit)
    ).scalars()
    return [orjson.loads(content) for content in rows]


def period_start(plan: dict[str, Any]) -> datetime | None:
    """The start of a CarePlan's period, or None."""
    start = (plan.get("period") or {}).get("start")
    if not isinstance(start, str):
        return None
    try:
        return parse_fhir_datetime_range(start)[0]
    except FhirTimeError:
        return None


def treatment_start(plans: list[dict[str, Any]]) -> datetime | None:
    """When the treatment episode began: the earliest start of the active CarePlans."""
    starts = [period_start(p) for p in plans if p.get("status") == "active"]
    known = [s for s in starts if s is not None]
    return min(known) if known else None


def patient_exists(session: Session, tenant_id: str, patient_id: str) -> bool:
    """Whether the tenant has a Patient with this id."""
    row = session.execute(
        select(_R.c.seq).where(
            _R.c.tenant_id == tenant_id, _R.c.resource_type == "Patient", _R.c.id == patient_id
        )
    ).first()
    return row is not None
