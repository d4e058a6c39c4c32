"""What the domains call to record their metrics: one call per event, labels bounded here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from careloop.services.alerts.vocabulary import Channel, Severity
from careloop.services.ehr.vocabulary import PushState
from careloop.services.metrics.after_commit import after_commit
from careloop.services.metrics.registry import (
    ALERTS_OPENED,
    EHR_PUSHES,
    NOTIFICATIONS,
    REPORT_TO_NOTIFICATION,
    REPORTS_ACCEPTED,
    RISK_SIGNALS_ACCEPTED,
)
from careloop.services.reports.schemas import Instrument
from careloop.services.risks.schemas import Category, Level
from careloop.services.store.models import FhirResource, FhirResourceHistory

OTHER = "other"
_INSTRUMENTS = frozenset(get_args(Instrument))
_CATEGORIES = frozenset(get_args(Category))
_LEVELS = frozenset(get_args(Level))
_PUSH_OUTCOMES: dict[str, str] = {
    PushState.WRITTEN: "written",
    PushState.REJECTED: "refused",
    PushState.BLOCKED: "blocked",
}
_R = FhirResource.__table__  # type: ignore[attr-defined]
_H = FhirResourceHistory.__table__  # type: ignore[attr-defined]


def _severity(value: str) -> str:
    return value if Severity.has(value) else OTHER


def _channel(value: str) -> str:
    return value if Channel.has(value) else OTHER


def _instrument(value: str) -> str:
    return value if value in _INSTRUMENTS else OTHER


def reports_accepted(session: Session, instruments: Iterable[str]) -> None:
    """Count the reports stored by ``session``'s unit of work, by instrument, once it commits."""
    counts = Counter(_instrument(i) for i in instruments)
    if counts:
        after_commit(session, lambda: _count_reports(counts))


def _count_reports(counts: Counter[str]) -> None:
    for instrument, n in counts.items():
        REPORTS_ACCEPTED.labels(instrument).inc(n)


def risk_signal_accepted(session: Session, category: str, level: str) -> None:
    """Count a risk signal stored by ``session``'s unit of work, once it commits."""
    child = RISK_SIGNALS_ACCEPTED.labels(
        category if category in _CATEGORIES else OTHER, level if level in _LEVELS else OTHER
    )
    after_commit(session, child.inc)


def alert_opened(session: Session, severity: str) -> None:
    """Count an alert opened by ``session``'s unit of work, once it commits."""
    child = ALERTS_OPENED.labels(_severity(severity))
    after_commit(session, child.inc)


def notification_attempted(session: Session, channel: str, outcome: str) -> None:
    """Count a notification attempt (``sent``, ``failed`` or ``blocked``) once it commits."""
    child = NOTIFICATIONS.labels(_channel(channel), outcome)
    after_commit(session, child.inc)


def report_notified(
    session: Session, observation_id: str | None, severity: str, accepted_at: datetime
) -> None:
    """Observe the time from the reading's receipt to the notification's acceptance."""
    received = reading_received_at(session, observation_id) if observation_id else None
    if received is None:
        return
    seconds = max(0.0, (accepted_at - received).total_seconds())
    child = REPORT_TO_NOTIFICATION.labels(_severity(severity))
    after_commit(session, lambda: child.observe(seconds))


def reading_received_at(session: Session, observation_id: str) -> datetime | None:
    """When careloop stored the Observation's first version (its receipt)."""
    row = session.execute(
        select(_R.c.version_id, _R.c.last_updated).where(
            _R.c.resource_type == "Observation", _R.c.id == observation_id
        )
    ).first()
    if row is None or row.version_id == 1:
        return row.last_updated if row is not None else None
    first: datetime | None = session.execute(
        select(_H.c.last_updated).where(
            _H.c.resource_type == "Observation", _H.c.id == observation_id, _H.c.version_id == 1
        )
    ).scalar()
    return first


def ehr_pushes(session: Session, connection_id: str, states: Iterable[str]) -> None:
    """Count pushes that reached an outcome (written, refused, blocked), once they commit."""
    counts = Counter(_PUSH_OUTCOMES[s] for s in states if s in _PUSH_OUTCOMES)
    if counts:
        after_commit(session, lambda: _count_pushes(connection_id, counts))


def _count_pushes(connection_id: str, counts: Counter[str]) -> None:
    for outcome, n in counts.items():
        EHR_PUSHES.labels(connection_id, outcome).inc(n)


def ehr_pushes_failed(connection_id: str, count: int) -> None:
    """Count pushes that failed transiently (they are retried); counted at once, as the
    transaction that tried them rolls back."""
    EHR_PUSHES.labels(connection_id, "failed").inc(count)
