"""Reading a patient's scores and plans from the store, always bounded by time or count.

Every query names the tenant, the patient and a row limit, so a page or an API call costs the
same for a patient with two years of daily reports as for one with a week.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, or_, select
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


MAX_SCAN = 5000
"""Observations of one patient looked through at most for one series (two years of daily mood,
sleep and sleep quality plus weekly questionnaires is about 2,400)."""
_PAGE = 500


@dataclass(frozen=True)
class _Filter:
    tenant_id: str
    patient_id: str
    since: datetime | None
    until: datetime | None
    code: str | None


def _page(
    session: Session,
    where: _Filter,
    oldest: bool,
    after: tuple[datetime, int] | None,
    size: int,
) -> list[Any]:
    query = select(_R.c.seq, _R.c.id, _R.c.date_lo, _R.c.content).where(
        _R.c.tenant_id == where.tenant_id,
        _R.c.resource_type == "Observation",
        _R.c.patient_id == where.patient_id,
        _R.c.date_lo.is_not(None),
    )
    if where.since is not None:
        query = query.where(_R.c.date_lo >= where.since)
    if where.until is not None:
        query = query.where(_R.c.date_lo <= where.until)
    if where.code is not None:
        # A scalar subquery (never turned into a join) probes the token table's resource_seq
        # index for each of the patient's rows as they are walked in date order: a planner
        # that joins instead reads every token of the code in the database.
        token = (
            select(_T.c.resource_seq)
            .where(_T.c.resource_seq == _R.c.seq, _T.c.param == "code", _T.c.code == where.code)
            .limit(1)
            .correlate(_R)
            .scalar_subquery()
        )
        query = query.where(token.is_not(None))
    if after is not None:
        when, seq = after
        if oldest:
            query = query.where(
                or_(_R.c.date_lo > when, and_(_R.c.date_lo == when, _R.c.seq > seq))
            )
        else:
            query = query.where(
                or_(_R.c.date_lo < when, and_(_R.c.date_lo == when, _R.c.seq < seq))
            )
    order = (_R.c.date_lo, _R.c.seq) if oldest else (_R.c.date_lo.desc(), _R.c.seq.desc())
    return list(session.execute(query.order_by(*order).limit(size)).all())


def observations(
    session: Session,
    tenant_id: str,
    patient_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    code: str | None = None,
    oldest: bool = False,
    scan: int = MAX_SCAN,
    first_page: int = _PAGE,
) -> Iterator[tuple[str, datetime, dict[str, Any]]]:
    """The patient's Observations (id, time, resource), newest first (``oldest``: oldest
    first), from ``since`` to ``until`` (both included), only those with a coding of ``code``
    (any system) when it is given; at most ``scan`` of them, read a page at a time.

    Driven by the store's (tenant, type, patient, date) index, so the cost follows the rows
    read, never the tenant's size.
    """
    where = _Filter(tenant_id, patient_id, since, until, code)
    after: tuple[datetime, int] | None = None
    seen = 0
    size = min(first_page, _PAGE)
    while seen < scan:
        rows = _page(session, where, oldest, after, size)
        for row in rows[: scan - seen]:
            yield row.id, row.date_lo, orjson.loads(row.content)
        seen += len(rows)
        if len(rows) < size:
            return
        after = (rows[-1].date_lo, rows[-1].seq)
        size = _PAGE


def first_observation_since(
    session: Session, tenant_id: str, patient_id: str, since: datetime
) -> datetime | None:
    """When the patient's oldest Observation from ``since`` on was made (one indexed row)."""
    for _id, when, _resource in observations(
        session, tenant_id, patient_id, since=since, oldest=True, scan=1, first_page=1
    ):
        return when
    return None


def reading_of(rid: str, when: datetime, observation: dict[str, Any]) -> Reading | None:
    """The Reading of an Observation, or None when it is not a result (entered in error)."""
    if observation.get("status") in _NOT_RESULTS:
        return None
    components: dict[str, float] = {}
    for component in observation.get("component") or []:
        value = _number(component)
        for coding in (component.get("code") or {}).get("coding") or []:
            if value is not None and isinstance(coding.get("code"), str):
                components[coding["code"]] = value
    return Reading(rid, when, _number(observation), components)


def series_by_code(
    found: Iterator[tuple[str, datetime, dict[str, Any]]],
    wanted: dict[tuple[str, str], int],
) -> dict[tuple[str, str], list[Reading]]:
    """Readings of each wanted ``(system, code)``, up to its count, in the order found."""
    result: dict[tuple[str, str], list[Reading]] = {key: [] for key in wanted}
    for rid, when, observation in found:
        for coding in (observation.get("code") or {}).get("coding") or []:
            key = (coding.get("system"), coding.get("code"))
            if key in result and len(result[key]) < wanted[key]:
                reading = reading_of(rid, when, observation)
                if reading is not None:
                    result[key].append(reading)
                break
        if all(len(result[k]) >= n for k, n in wanted.items()):
            break
    return result


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
    # A week of daily ratings lies between two weekly questionnaires: start with a small page.
    first_page = max(50, 25 * limit)
    found = observations(
        session, tenant_id, patient_id, since=since, oldest=oldest, first_page=first_page
    )
    result = series_by_code(found, {(system, code): limit})[(system, code)]
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
