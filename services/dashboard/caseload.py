"""The caseload: the tenant's patients (or the clinician's own), who needs attention first.

A handful of queries whatever the history: the latest two and the first score of each patient
and instrument come from one windowed query each (``row_number()``), open alerts from one more.
"My patients" are those whose active CareTeam lists the clinician's Practitioner as a member;
without one (or with ``show=all``) the caseload is every patient of the tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlmodel import Session, col
from sqlmodel import select as select_model

from careloop.fhir.terminology import LOINC
from careloop.services.alerts.models import Alert
from careloop.services.alerts.vocabulary import AlertStatus, Severity, severity_rank
from careloop.services.measures.core import INSTRUMENTS, Instrument, Score, Summary, summarise
from careloop.services.measures.series import treatment_start
from careloop.services.measures.service import instrument_summary
from careloop.services.patients.labels import patient_labels
from careloop.services.store.models import FhirResource, SearchToken

_R = FhirResource.__table__  # type: ignore[attr-defined]
_T = SearchToken.__table__  # type: ignore[attr-defined]
SHOW_MINE, SHOW_ALL = "mine", "all"
MAX_PATIENTS = 500
"""Patients on one caseload page (the most recently updated first)."""
MAX_TEAMS = 5000
MAX_PLANS = 5000
_CHUNK = 500
MISSED_CHECKIN = "missed-checkin"
_BY_CODE = {i.code: i for i in INSTRUMENTS.values()}


@dataclass
class CaseloadRow:
    """One patient on the caseload."""

    patient_id: str
    label: str = ""
    summaries: dict[str, Summary] = field(default_factory=dict)
    open_alerts: int = 0
    top_severity: str | None = None
    critical: bool = False
    other_open: bool = False
    """An open alert other than a missed check-in."""
    overdue: bool = False
    """An open missed check-in alert: no report for longer than the care plan expects."""

    @property
    def not_on_track(self) -> bool:
        """Any instrument not on track."""
        return any(s.not_on_track for s in self.summaries.values())

    @property
    def worst(self) -> float:
        """The worst latest score as a fraction of its instrument's range."""
        fractions = [
            s.latest.total / s.instrument.max_total for s in self.summaries.values() if s.latest
        ]
        return max(fractions, default=-1.0)

    @property
    def tier(self) -> int:
        """0 critical alert, 1 other open alert, 2 overdue, 3 not on track, 4 the rest."""
        flags = (self.critical, self.other_open, self.overdue, self.not_on_track)
        return next((i for i, flag in enumerate(flags) if flag), len(flags))

    @property
    def reasons(self) -> list[str]:
        """Why the patient is where they are in the list, in words."""
        words = []
        if self.critical:
            words.append("Critical alert open")
        elif self.other_open:
            words.append("Open alert")
        if self.overdue:
            words.append("Check-in overdue")
        if self.not_on_track:
            words.append("Not on track")
        return words

    def sort_key(self) -> tuple[int, float, int, str]:
        """Who needs attention first: tier, then worst latest score, then alert severity."""
        rank = severity_rank(self.top_severity) if self.top_severity else -1
        return (self.tier, -self.worst, -rank, self.label.casefold())


@dataclass
class Caseload:
    """The caseload page's rows and how they were chosen."""

    rows: list[CaseloadRow]
    show: str
    mine_available: bool
    truncated: bool
    withheld: list[str] = field(default_factory=list)
    """Ids of the patients whose consent keeps them from the care team (nothing else shown)."""


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _my_patients(session: Session, tenant_id: str, practitioner: str) -> list[str]:
    rows = session.execute(
        select(_R.c.patient_id, _R.c.content)
        .where(
            _R.c.tenant_id == tenant_id,
            _R.c.resource_type == "CareTeam",
            _R.c.patient_id.is_not(None),
        )
        .limit(MAX_TEAMS)
    ).all()
    mine = set()
    for row in rows:
        team = orjson.loads(row.content)
        if team.get("status", "active") not in ("active", "proposed"):
            continue
        members = [
            (p.get("member") or {}).get("reference")
            for p in team.get("participant") or []
            if isinstance(p, dict)
        ]
        if practitioner in members:
            mine.add(row.patient_id)
    return sorted(mine)


def _all_patients(session: Session, tenant_id: str) -> list[str]:
    return list(
        session.execute(
            select(_R.c.id)
            .where(_R.c.tenant_id == tenant_id, _R.c.resource_type == "Patient")
            .order_by(_R.c.last_updated.desc(), _R.c.seq.desc())
            .limit(MAX_PATIENTS + 1)
        ).scalars()
    )


def _ranked_scores(
    session: Session, tenant_id: str, ids: list[str], newest: bool, keep: int
) -> dict[tuple[str, str], list[Score]]:
    """The first (or newest) ``keep`` scores of each patient and instrument, oldest first."""
    order = (_R.c.date_lo.desc(), _R.c.seq.desc()) if newest else (_R.c.date_lo, _R.c.seq)
    found: dict[tuple[str, str], list[Score]] = {}
    for chunk in _chunks(ids):
        rank = func.row_number().over(partition_by=(_R.c.patient_id, _T.c.code), order_by=order)
        # Rank without the content (the window sorts every score), then read only the kept rows.
        ranked = (
            select(_R.c.seq, _T.c.code, rank.label("rank"))
            .join(_T, _T.c.resource_seq == _R.c.seq)
            .where(
                _R.c.tenant_id == tenant_id,
                _R.c.resource_type == "Observation",
                _R.c.patient_id.in_(chunk),
                _R.c.date_lo.is_not(None),
                # No tenant or type on the token side (the resource row has them): the lookup
                # index, which leads with the tenant, stays out of the join, which then probes
                # each resource's own tokens by resource_seq. Otherwise SQLite (never analysed),
                # or PostgreSQL before its first ANALYZE, scans the tenant's score tokens once
                # per resource row.
                _T.c.param == "code",
                _T.c.system == LOINC,
                _T.c.code.in_(list(_BY_CODE)),
            )
            .subquery()
        )
        rows = session.execute(
            select(_R.c.patient_id, ranked.c.code, _R.c.date_lo, _R.c.content)
            .join(ranked, ranked.c.seq == _R.c.seq)
            .where(ranked.c.rank <= keep)
            .order_by(_R.c.date_lo)
        ).all()
        for row in rows:
            value = orjson.loads(row.content).get("valueInteger")
            if isinstance(value, int) and not isinstance(value, bool):
                found.setdefault((row.patient_id, row.code), []).append(Score(row.date_lo, value))
    return found


def _plan_starts(session: Session, tenant_id: str, ids: list[str]) -> dict[str, datetime]:
    plans: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(ids):
        rows = session.execute(
            select(_R.c.patient_id, _R.c.content)
            .where(
                _R.c.tenant_id == tenant_id,
                _R.c.resource_type == "CarePlan",
                _R.c.patient_id.in_(chunk),
            )
            .limit(MAX_PLANS)
        ).all()
        for row in rows:
            plans.setdefault(row.patient_id, []).append(orjson.loads(row.content))
    starts = {pid: treatment_start(found) for pid, found in plans.items()}
    return {pid: start for pid, start in starts.items() if start is not None}


def _summaries(session: Session, tenant_id: str, ids: list[str]) -> dict[str, dict[str, Summary]]:
    latest = _ranked_scores(session, tenant_id, ids, newest=True, keep=2)
    first = _ranked_scores(session, tenant_id, ids, newest=False, keep=1)
    starts = _plan_starts(session, tenant_id, ids)
    result: dict[str, dict[str, Summary]] = {}
    for pid in ids:
        result[pid] = {}
        start = starts.get(pid)
        for key, instrument in INSTRUMENTS.items():
            baseline = next(iter(first.get((pid, instrument.code), [])), None)
            if start is not None and baseline is not None and baseline.when < start:
                # The episode began after the first score: its baseline is read on its own.
                result[pid][key] = _one(session, tenant_id, pid, instrument, start)
                continue
            recent = latest.get((pid, instrument.code), [])
            result[pid][key] = summarise(instrument, baseline, recent, start)
    return result


def _one(
    session: Session, tenant_id: str, pid: str, instrument: Instrument, start: datetime
) -> Summary:
    return instrument_summary(session, tenant_id, pid, instrument, start)


def _alerts(session: Session, tenant_id: str, rows: dict[str, CaseloadRow]) -> None:
    for chunk in _chunks(list(rows)):
        alerts = session.exec(
            select_model(Alert).where(
                Alert.tenant_id == tenant_id,
                Alert.status != AlertStatus.RESOLVED,
                col(Alert.patient_id).in_(chunk),
            )
        ).all()
        for alert in alerts:
            row = rows[alert.patient_id]
            row.open_alerts += 1
            if row.top_severity is None or severity_rank(alert.severity) > severity_rank(
                row.top_severity
            ):
                row.top_severity = alert.severity
            if alert.severity == Severity.CRITICAL:
                row.critical = True
            if alert.rule_id == MISSED_CHECKIN:
                row.overdue = True
            else:
                row.other_open = True


def load_caseload(
    session: Session,
    tenant_id: str,
    practitioner: str | None,
    show: str | None,
    now: datetime,
    withheld: Callable[[list[str]], set[str]] = lambda _ids: set(),
) -> Caseload:
    """The caseload sorted by who needs attention first (``show``: mine, all, or None for
    the clinician's own when they have any).

    ``withheld`` names the patients (of those given) the care team may not see: only their ids
    are listed, apart, and nothing of theirs is read.
    """
    del now  # the judgements use the scores' own dates
    mine = _my_patients(session, tenant_id, practitioner) if practitioner else []
    chosen = show or (SHOW_MINE if mine else SHOW_ALL)
    ids = mine if chosen == SHOW_MINE else _all_patients(session, tenant_id)
    truncated = len(ids) > MAX_PATIENTS
    ids = ids[:MAX_PATIENTS]
    hidden = withheld(ids)
    ids = [pid for pid in ids if pid not in hidden]
    rows = {pid: CaseloadRow(pid) for pid in ids}
    labels = patient_labels(session, tenant_id, ids)
    for pid, summaries in _summaries(session, tenant_id, ids).items():
        rows[pid].summaries = summaries
        rows[pid].label = labels[pid]
    _alerts(session, tenant_id, rows)
    ordered = sorted(rows.values(), key=CaseloadRow.sort_key)
    return Caseload(ordered, chosen, bool(mine), truncated, sorted(hidden))
