"""One alert as its page shows it: reasons, the reading, escalation, notifications, history."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlmodel import Session, col, select

from careloop.services.alerts.models import Alert, AlertEvent, Notification
from careloop.services.alerts.vocabulary import AlertEventKind, AlertStatus
from careloop.services.dashboard.inbox_view import titles_of
from careloop.services.dashboard.labels import actor_labels
from careloop.services.dashboard.relative_time import ago, stamp, until
from careloop.services.patients.labels import patient_label
from careloop.services.store.repository import ResourceStore

ALERT_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")
MAX_EVENTS = 500
MAX_NOTIFICATIONS = 200


@dataclass(frozen=True)
class Reason:
    """One rule the reading crossed: what it saw against which threshold."""

    title: str
    severity: str
    values: list[tuple[str, str]]
    threshold: list[tuple[str, str]]
    source: str


@dataclass(frozen=True)
class Reading:
    """The Observation that fired the alert, in brief."""

    reference: str
    name: str
    value: str
    band: str
    effective: str
    items: list[tuple[str, str, str]]
    """(item text, score, item code) per item."""
    code_names: dict[str, str]
    """Item codes (LOINC) to their text, to name the values a rule saw."""


@dataclass(frozen=True)
class HistoryEntry:
    """One step of the alert's life: who did what, when, and any note."""

    kind: str
    actor: str
    at: str
    ago: str
    details: list[tuple[str, str]]
    note: str | None


@dataclass(frozen=True)
class NotificationRow:
    """One message about the alert to one recipient."""

    recipient: str
    channel: str
    event: str
    status: str
    attempts: int
    created: str


@dataclass(frozen=True)
class AlertDetail:
    """Everything the alert page shows."""

    alert: Alert
    titles: list[str]
    patient: str
    reasons: list[Reason]
    reading: Reading | None
    opened: str
    opened_ago: str
    next_escalation: str | None
    acknowledged_by: str | None
    resolved_by: str | None
    notifications: list[NotificationRow]
    history: list[HistoryEntry]
    crossed: frozenset[str]
    """Item codes a reason saw (their rows in the reading are marked)."""

    @property
    def can_acknowledge(self) -> bool:
        """Only an open alert is acknowledged."""
        return self.alert.status == AlertStatus.OPEN

    @property
    def can_resolve(self) -> bool:
        """Any alert not yet resolved can be."""
        return self.alert.status != AlertStatus.RESOLVED


def valid_alert_id(alert_id: str) -> bool:
    """Whether ``alert_id`` has the shape of an alert id (else the page is a 404)."""
    return bool(ALERT_ID.fullmatch(alert_id))


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _pairs(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [(str(k).replace("_", " "), _shown(v)) for k, v in value.items() if v is not None]
    if value is None:
        return []
    return [("value", _shown(value))]


def reasons_of(explanation: dict[str, Any]) -> list[Reason]:
    """The reasons an alert records: ``explanation["reasons"]`` when present, else itself."""
    found = explanation.get("reasons")
    items = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
    return [
        Reason(
            title=str(item.get("title") or item.get("rule") or "alert"),
            severity=str(item.get("severity") or explanation.get("severity") or ""),
            values=_pairs(item.get("values")),
            threshold=_pairs(item.get("threshold")),
            source=_shown(item.get("source") or ""),
        )
        for item in (items or [explanation])
    ]


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    codings = concept.get("coding") or []
    for coding in codings:
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    return ""


def _value(resource: dict[str, Any]) -> str:
    if "valueInteger" in resource:
        return str(resource["valueInteger"])
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict) and "value" in quantity:
        return f"{quantity['value']} {quantity.get('unit', '')}".strip()
    for key in ("valueString", "valueBoolean", "valueDecimal"):
        if key in resource:
            return _shown(resource[key])
    return _concept_text(resource.get("valueCodeableConcept"))


def reading_of(store: ResourceStore, observation_id: str | None) -> Reading | None:
    """The alert's reading (name, value, band, when, item scores), when it is stored."""
    if not observation_id:
        return None
    stored = store.read("Observation", observation_id)
    if stored is None:
        return None
    obs = stored.as_dict()
    interpretation = obs.get("interpretation") or [{}]
    components = [c for c in obs.get("component") or [] if isinstance(c, dict)]
    code_names = {}
    for component in components:
        for coding in (component.get("code") or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                code_names[str(coding["code"])] = _concept_text(component.get("code"))
    effective = obs.get("effectiveDateTime")
    return Reading(
        reference=f"Observation/{observation_id}",
        name=_concept_text(obs.get("code")) or "Reading",
        value=_value(obs),
        band=_concept_text(interpretation[0]),
        effective=_effective(effective) if isinstance(effective, str) else "",
        items=[(_concept_text(c.get("code")), _value(c), _code(c.get("code"))) for c in components],
        code_names=code_names,
    )


def _code(concept: Any) -> str:
    codings = (concept or {}).get("coding") or [] if isinstance(concept, dict) else []
    return next((str(c["code"]) for c in codings if isinstance(c, dict) and c.get("code")), "")


def _effective(value: str) -> str:
    try:
        return stamp(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return value


def _named(reason: Reason, reading: Reading | None) -> Reason:
    """``reason`` with item codes among its values named as the reading names them."""
    if reading is None or not reading.code_names:
        return reason
    values = [
        (f"{reading.code_names[k]} ({k})" if reading.code_names.get(k) else k, v)
        for k, v in reason.values
    ]
    return Reason(reason.title, reason.severity, values, reason.threshold, reason.source)


_DETAIL_SKIP = {"recipients"}


def _history(
    alert: Alert, events: list[AlertEvent], names: dict[str, str], now: datetime
) -> list[HistoryEntry]:
    entries = []
    for event in events:
        try:
            detail = orjson.loads(event.detail or "{}")
        except orjson.JSONDecodeError:
            detail = {}
        details = _pairs(detail) if isinstance(detail, dict) else []
        recipients = detail.get("recipients") if isinstance(detail, dict) else None
        if isinstance(recipients, list) and recipients:
            paged = ", ".join(names.get(str(r), str(r)) for r in recipients)
            details = [("paged", paged)] + [(k, v) for k, v in details if k not in _DETAIL_SKIP]
        note = None
        if event.kind == AlertEventKind.ACKNOWLEDGED:
            note = alert.acknowledgement_note
        elif event.kind == AlertEventKind.RESOLVED:
            note = alert.resolution_note
        entries.append(
            HistoryEntry(
                kind=event.kind,
                actor=names.get(event.actor, event.actor) if event.actor else "careloop",
                at=stamp(event.at),
                ago=ago(event.at, now),
                details=details,
                note=note,
            )
        )
    return entries


def alert_detail(
    session: Session, tenant_id: str, alert_id: str, now: datetime
) -> AlertDetail | None:
    """The page of ``tenant_id``'s alert ``alert_id``, or None (unknown, or another tenant's)."""
    if not valid_alert_id(alert_id):
        return None
    alert = session.exec(
        select(Alert).where(col(Alert.id) == alert_id, col(Alert.tenant_id) == tenant_id)
    ).first()
    if alert is None:
        return None
    events = list(
        session.exec(
            select(AlertEvent)
            .where(col(AlertEvent.alert_id) == alert.id)
            .order_by(col(AlertEvent.at), col(AlertEvent.id))
            .limit(MAX_EVENTS)
        ).all()
    )
    notifications = session.exec(
        select(Notification)
        .where(col(Notification.alert_id) == alert.id, col(Notification.tenant_id) == tenant_id)
        .order_by(col(Notification.created_at), col(Notification.id))
        .limit(MAX_NOTIFICATIONS)
    ).all()
    people: list[str] = [e.actor for e in events if e.actor]
    for event in events:
        try:
            recipients = orjson.loads(event.detail or "{}").get("recipients") or []
        except (orjson.JSONDecodeError, AttributeError):
            recipients = []
        people += [str(r) for r in recipients if isinstance(r, str)]
    people += [n.recipient for n in notifications]
    people += [p for p in (alert.acknowledged_by, alert.resolved_by) if p]
    names = actor_labels(session, tenant_id, people)
    explanation = orjson.loads(alert.explanation)
    reading = reading_of(ResourceStore(session, tenant_id), alert.observation_id)
    return AlertDetail(
        alert=alert,
        titles=titles_of(explanation),
        patient=patient_label(session, tenant_id, alert.patient_id),
        reasons=[_named(r, reading) for r in reasons_of(explanation)],
        reading=reading,
        opened=stamp(alert.opened_at),
        opened_ago=ago(alert.opened_at, now),
        next_escalation=(
            f"{stamp(alert.next_escalation_at)} ({until(alert.next_escalation_at, now)})"
            if alert.next_escalation_at
            else None
        ),
        acknowledged_by=names.get(alert.acknowledged_by or "", alert.acknowledged_by),
        resolved_by=names.get(alert.resolved_by or "", alert.resolved_by),
        notifications=[
            NotificationRow(
                recipient=names.get(n.recipient, n.recipient),
                channel=n.channel,
                event=n.event,
                status=n.status,
                attempts=n.attempts,
                created=stamp(n.created_at),
            )
            for n in notifications
        ],
        history=_history(alert, events, names, now),
        crossed=frozenset(_crossed(explanation)),
    )


def _crossed(explanation: dict[str, Any]) -> set[str]:
    found = explanation.get("reasons")
    reasons = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
    codes: set[str] = set()
    for reason in reasons or [explanation]:
        values = reason.get("values")
        if isinstance(values, dict):
            codes |= {str(k) for k in values}
    return codes
