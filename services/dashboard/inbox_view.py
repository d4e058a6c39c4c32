"""The inbox's rows: the tenant's alerts, open first by severity and age, filtered and labelled."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, case, func, true
from sqlmodel import Session, col, select

from careloop.services.alerts.models import Alert, AlertEvent
from careloop.services.alerts.vocabulary import AlertEventKind, AlertStatus, Severity
from careloop.services.dashboard.labels import actor_labels
from careloop.services.dashboard.relative_time import ago, stamp
from careloop.services.patients.labels import patient_labels

MAX_ROWS = 200
"""Rows shown at once; the count tells how many matched."""
MAX_PATIENT_CHOICES = 500
PATIENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
SEVERITIES = [s.value for s in sorted(Severity, key=lambda s: -s.rank)]
STATUSES = [s.value for s in AlertStatus]


class BadFilter(ValueError):
    """A query value the inbox does not take (answered with a 400 page)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass(frozen=True)
class InboxFilters:
    """What the clinician narrowed the inbox to (None: any)."""

    severity: str | None = None
    status: str | None = None
    patient: str | None = None

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return any((self.severity, self.status, self.patient))


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = list(query.get(name, []))
    if len(values) > 1:
        raise BadFilter(name, "give it at most once")
    if not values or values[0] == "":
        return None
    value = values[0]
    if len(value) > 64:
        raise BadFilter(name, "is too long")
    return value


def parse_filters(query: Mapping[str, Sequence[str]]) -> InboxFilters:
    """The filters in ``query`` (name to values); ``BadFilter`` for a value not offered."""
    severity = _one(query, "severity")
    if severity is not None and severity not in SEVERITIES:
        raise BadFilter("severity", "is not one of " + ", ".join(SEVERITIES))
    status = _one(query, "status")
    if status is not None and status not in STATUSES:
        raise BadFilter("status", "is not one of " + ", ".join(STATUSES))
    patient = _one(query, "patient")
    if patient is not None and not PATIENT_ID.fullmatch(patient):
        raise BadFilter("patient", "is not a patient id")
    return InboxFilters(severity, status, patient)


@dataclass(frozen=True)
class InboxRow:
    """One alert as the inbox lists it."""

    id: str
    severity: str
    titles: list[str]
    patient_id: str
    patient: str
    opened_ago: str
    opened_at: str
    status: str
    escalation_level: int
    paged: list[str]


@dataclass(frozen=True)
class InboxPage:
    """The rows shown, how many matched, and the patients the filter offers."""

    rows: list[InboxRow]
    total: int
    open_count: int
    patients: list[tuple[str, str]] = field(default_factory=list)
    """(patient id, label) of every patient with an alert, by label."""


def titles_of(explanation: dict[str, Any]) -> list[str]:
    """The titles of an alert's reasons (several when one reading crossed several rules)."""
    reasons = explanation.get("reasons")
    if isinstance(reasons, list) and reasons:
        found = [str(r.get("title") or r.get("rule") or "") for r in reasons if isinstance(r, dict)]
        return [t for t in found if t] or [str(explanation.get("title", ""))]
    return [str(explanation.get("title") or explanation.get("rule") or "alert")]


def _order() -> list[Any]:
    status_rank = case(
        (col(Alert.status) == AlertStatus.OPEN, 0),
        (col(Alert.status) == AlertStatus.ACKNOWLEDGED, 1),
        else_=2,
    )
    severity_rank = case(*[(col(Alert.severity) == s.value, s.rank) for s in Severity], else_=-1)
    unresolved_severity = case((col(Alert.status) == AlertStatus.RESOLVED, 0), else_=-severity_rank)
    return [
        status_rank,
        unresolved_severity,
        col(Alert.resolved_at).desc(),
        col(Alert.opened_at).asc(),
        col(Alert.id),
    ]


def _where(tenant_id: str, filters: InboxFilters) -> list[Any]:
    return [col(Alert.tenant_id) == tenant_id, *_narrowing(filters)]


def _narrowing(filters: InboxFilters) -> list[Any]:
    clauses: list[Any] = []
    if filters.severity:
        clauses.append(col(Alert.severity) == filters.severity)
    if filters.status:
        clauses.append(col(Alert.status) == filters.status)
    if filters.patient:
        clauses.append(col(Alert.patient_id) == filters.patient)
    return clauses


def paged_recipients(session: Session, alert_ids: Sequence[str]) -> dict[str, list[str]]:
    """Who each alert's notifications and escalations went to (references, in paging order)."""
    paged: dict[str, list[str]] = {a: [] for a in alert_ids}
    if not alert_ids:
        return paged
    events = session.exec(
        select(AlertEvent.alert_id, AlertEvent.detail)
        .where(
            col(AlertEvent.alert_id).in_(list(alert_ids)),
            col(AlertEvent.kind).in_([AlertEventKind.NOTIFIED, AlertEventKind.ESCALATED]),
        )
        .order_by(col(AlertEvent.at), col(AlertEvent.id))
    ).all()
    for alert_id, detail in events:
        try:
            recipients = orjson.loads(detail or "{}").get("recipients") or []
        except (orjson.JSONDecodeError, AttributeError):
            continue
        for recipient in recipients:
            if isinstance(recipient, str) and recipient not in paged[alert_id]:
                paged[alert_id].append(recipient)
    return paged


def _per_patient(
    session: Session, tenant_id: str, filters: InboxFilters
) -> list[tuple[str, int, int]]:
    """(patient id, alerts matching ``filters``, of them open) of every patient with an alert."""
    matching = and_(true(), *_narrowing(filters))
    is_open = and_(matching, col(Alert.status) == AlertStatus.OPEN)
    rows = session.exec(
        select(
            Alert.patient_id,
            func.sum(case((matching, 1), else_=0)),
            func.sum(case((is_open, 1), else_=0)),
        )
        .where(col(Alert.tenant_id) == tenant_id)
        .group_by(col(Alert.patient_id))
    ).all()
    return [(p, int(total or 0), int(opened or 0)) for p, total, opened in rows]


def inbox_page(
    session: Session,
    tenant_id: str,
    filters: InboxFilters,
    now: datetime,
    withheld: Callable[[list[str]], set[str]] = lambda _ids: set(),
) -> InboxPage:
    """The inbox of ``tenant_id`` narrowed by ``filters``, as of ``now``.

    ``withheld`` names the patients (of those given) whose alerts the care team may not see:
    they are left out of the rows, the counts and the patient choices.
    """
    counts = _per_patient(session, tenant_id, filters)
    hidden = withheld([p for p, _total, _open in counts])
    shown = [c for c in counts if c[0] not in hidden]
    total = sum(t for _p, t, _o in shown)
    open_count = sum(o for _p, _t, o in shown)
    where = _where(tenant_id, filters)
    if hidden:
        where.append(col(Alert.patient_id).not_in(sorted(hidden)))
    alerts = session.exec(select(Alert).where(*where).order_by(*_order()).limit(MAX_ROWS)).all()
    patient_ids = [p for p, _t, _o in shown][:MAX_PATIENT_CHOICES]
    labels = patient_labels(session, tenant_id, [*patient_ids, *(a.patient_id for a in alerts)])
    paged = paged_recipients(session, [a.id for a in alerts])
    names = actor_labels(session, tenant_id, [r for rs in paged.values() for r in rs])
    rows = [
        InboxRow(
            id=alert.id,
            severity=alert.severity,
            titles=titles_of(orjson.loads(alert.explanation)),
            patient_id=alert.patient_id,
            patient=labels[alert.patient_id],
            opened_ago=ago(alert.opened_at, now),
            opened_at=stamp(alert.opened_at),
            status=alert.status,
            escalation_level=alert.escalation_level,
            paged=[names.get(r, r) for r in paged[alert.id]],
        )
        for alert in alerts
    ]
    choices = sorted(((p, labels[p]) for p in patient_ids), key=lambda c: (c[1], c[0]))
    return InboxPage(rows, total, open_count, choices)
