"""Opening alerts: the rules one reading fires become one alert, or update the open one.

A reading that crosses several rules pages once, at the highest severity, and its alert lists
every reason, so one acknowledgement stops one escalation chain.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlmodel import Session, col, select

from careloop.fhir.alerts import task_id_for
from careloop.services.alerts.firing import Firing, alert_explanation, reasons_of
from careloop.services.alerts.models import Alert
from careloop.services.alerts.routing import targets_for
from careloop.services.alerts.service import _event, _next_escalation, _notify, _sync_task
from careloop.services.alerts.vocabulary import (
    AlertEventKind,
    AlertStatus,
    NotificationEvent,
    Severity,
    severity_rank,
)
from careloop.services.db import utcnow
from careloop.services.metrics.recording import alert_opened
from careloop.services.settings import Settings
from careloop.services.store.models import FhirResource
from careloop.services.store.repository import ResourceStore


def _rank(reason: dict[str, Any]) -> int:
    severity = reason.get("severity")
    return severity_rank(severity) if isinstance(severity, str) and Severity.has(severity) else -1


def merged_reasons(
    earlier: Sequence[dict[str, Any]],
    firings: Sequence[Firing],
    observation_id: str | None,
    primary: str | None = None,
) -> list[dict[str, Any]]:
    """The reasons of an alert after ``firings``: most severe first, one per rule.

    A rule that fired again replaces its earlier reason; earlier reasons of rules that did not
    fire stay (what they found still needs follow-up). Among equally severe reasons the rule
    ``primary`` comes first, then this reading's in the order given, then the earlier ones.
    """
    fresh: dict[str, dict[str, Any]] = {}
    for firing in firings:
        fresh.setdefault(firing.rule_id, firing.reason(observation_id))
    kept = [r for r in earlier if r.get("rule") not in fresh]
    return sorted([*fresh.values(), *kept], key=lambda r: (-_rank(r), r.get("rule") != primary))


def _rules(alert: Alert) -> set[str]:
    return {str(r.get("rule")) for r in reasons_of(orjson.loads(alert.explanation))}


def _target(unresolved: Sequence[Alert], firings: Sequence[Firing]) -> Alert | None:
    """The unresolved alert the reading updates: the one opened for its most severe rule, else
    the most severe (then oldest) one that already lists a rule the reading fired."""
    exact = next((a for a in unresolved if a.rule_id == firings[0].rule_id), None)
    if exact is not None:
        return exact
    fired = {f.rule_id for f in firings}
    matching = [a for a in unresolved if a.rule_id in fired or fired & _rules(a)]
    return max(matching, key=lambda a: severity_rank(a.severity), default=None)


def _lock_patient(session: Session, tenant_id: str, patient_id: str) -> None:
    """Serialise the readings of one patient, so two of them never open two alerts."""
    session.exec(
        select(FhirResource.seq)
        .where(
            FhirResource.tenant_id == tenant_id,
            FhirResource.resource_type == "Patient",
            FhirResource.id == patient_id,
        )
        .with_for_update()
    ).first()


def apply_firings(
    session: Session,
    settings: Settings,
    tenant_id: str,
    patient_id: str,
    firings: Sequence[Firing],
    observation_id: str | None,
    now: datetime | None = None,
) -> Alert | None:
    """Open one alert for the rules one reading fired, or update the unresolved one that covers
    any of them; None when nothing fired.

    The most severe firing is the alert's primary rule (``Alert.rule_id`` and the top-level
    keys of the explanation); ``explanation["reasons"]`` lists every rule. A reading notifies
    each target at most once: always when it is critical or raises the alert's severity,
    otherwise at most once per suppression window.
    """
    if not firings:
        return None
    now = now or utcnow()
    ordered = sorted(firings, key=lambda f: -severity_rank(f.severity))
    _lock_patient(session, tenant_id, patient_id)
    unresolved = session.exec(
        select(Alert)
        .where(
            Alert.tenant_id == tenant_id,
            Alert.patient_id == patient_id,
            Alert.status != AlertStatus.RESOLVED,
        )
        .order_by(col(Alert.opened_at), col(Alert.id))
        .with_for_update()
    ).all()
    alert = _target(unresolved, ordered)
    if alert is None:
        return _open(session, settings, tenant_id, patient_id, ordered, observation_id, now)
    taken = {a.rule_id for a in unresolved if a.id != alert.id}
    _update(session, settings, alert, ordered, observation_id, taken, now)
    return alert


def _open(
    session: Session,
    settings: Settings,
    tenant_id: str,
    patient_id: str,
    firings: Sequence[Firing],
    observation_id: str | None,
    now: datetime,
) -> Alert:
    store = ResourceStore(session, tenant_id)
    reasons = merged_reasons([], firings, observation_id)
    severity = firings[0].severity
    alert_id = str(uuid.uuid4())
    alert = Alert(
        id=alert_id,
        tenant_id=tenant_id,
        patient_id=patient_id,
        rule_id=firings[0].rule_id,
        severity=severity,
        observation_id=observation_id,
        explanation=orjson.dumps(alert_explanation(reasons)).decode(),
        opened_at=now,
        updated_at=now,
        next_escalation_at=_next_escalation(settings, severity, now),
        task_id=task_id_for(alert_id),
    )
    session.add(alert)
    alert_opened(session, severity)
    _event(
        session,
        alert,
        AlertEventKind.OPENED,
        None,
        observation=observation_id,
        rules=[r["rule"] for r in reasons],
    )
    targets, owner = targets_for(session, store, patient_id, severity, 0)
    if severity == Severity.CRITICAL or not _recently_notified(session, settings, alert, now):
        _notify(session, alert, NotificationEvent.OPENED, targets, now)
    else:
        _event(session, alert, AlertEventKind.SUPPRESSED, None, reason="suppression window")
    session.flush()
    _sync_task(store, alert, owner, create=True)
    return alert


def _update(
    session: Session,
    settings: Settings,
    alert: Alert,
    firings: Sequence[Firing],
    observation_id: str | None,
    taken: set[str],
    now: datetime,
) -> None:
    store = ResourceStore(session, alert.tenant_id)
    earlier = reasons_of(orjson.loads(alert.explanation))
    reasons = merged_reasons(earlier, firings, observation_id, alert.rule_id)
    if reasons[0].get("rule") in taken:
        # Another unresolved alert is primary for that rule (the index allows one): stay as is.
        reasons.sort(key=lambda r: r.get("rule") != alert.rule_id)
    reading_severity = firings[0].severity
    raised = severity_rank(reading_severity) > severity_rank(alert.severity)
    alert.severity = max(alert.severity, reading_severity, key=severity_rank)
    alert.rule_id = str(reasons[0].get("rule") or alert.rule_id)
    alert.observation_id = observation_id or alert.observation_id
    alert.explanation = orjson.dumps(alert_explanation(reasons)).decode()
    alert.occurrences += 1
    alert.updated_at = now
    if raised and alert.status == AlertStatus.OPEN:
        alert.next_escalation_at = _next_escalation(settings, alert.severity, now)
    _event(
        session,
        alert,
        AlertEventKind.UPDATED,
        None,
        observation=observation_id,
        raised=raised,
        rules=[f.rule_id for f in firings],
    )
    if (
        reading_severity == Severity.CRITICAL
        or raised
        or not _recently_notified(session, settings, alert, now)
    ):
        targets, _ = targets_for(session, store, alert.patient_id, alert.severity, 0)
        _notify(session, alert, NotificationEvent.UPDATED, targets, now)
    else:
        _event(session, alert, AlertEventKind.SUPPRESSED, None, reason="suppression window")
    session.add(alert)
    session.flush()
    _sync_task(store, alert, None, create=False)


def _recently_notified(session: Session, settings: Settings, alert: Alert, now: datetime) -> bool:
    since = now - timedelta(hours=settings.suppression_hours)
    if alert.last_notified_at is not None and alert.last_notified_at >= since:
        return True
    previous = session.exec(
        select(Alert).where(
            Alert.tenant_id == alert.tenant_id,
            Alert.patient_id == alert.patient_id,
            Alert.rule_id == alert.rule_id,
            Alert.id != alert.id,
            col(Alert.last_notified_at) >= since,
        )
    ).first()
    return previous is not None
