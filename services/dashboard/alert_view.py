"""One alert as its page shows it: reasons, the reading, escalation, notifications, history."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlmodel import Session, col, select

from careloop.fhir.groups import ATTENDANCE, attendance_of
from careloop.services.alerts.models import Alert, AlertEvent, Notification
from careloop.services.alerts.vocabulary import AlertEventKind, AlertStatus
from careloop.services.cds.cards import ACKNOWLEDGE, FOLLOW_UP, suggestion_uuid
from careloop.services.cds.models import CdsClient
from careloop.services.dashboard.inbox_view import titles_of
from careloop.services.dashboard.labels import actor_labels
from careloop.services.dashboard.relative_time import ago, stamp, until
from careloop.services.ehr.models import EhrConnection
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
    label: str = ""
    """What happened, in words (``Card overridden in the EHR``)."""


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
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)  # rules: phq9-item9, phq9-total
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
    if observation_id.startswith("RiskAssessment/"):
        return _risk_signal_of(store, observation_id)
    if observation_id.startswith("Encounter/"):
        return _group_session_of(store, observation_id)
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


def _risk_signal_of(store: ResourceStore, reference: str) -> Reading | None:
    """A chatbot or AI risk signal shown as the alert's reading: its category and level."""
    stored = store.read("RiskAssessment", reference.removeprefix("RiskAssessment/"))
    if stored is None:
        return None
    assessment = stored.as_dict()
    prediction = (assessment.get("prediction") or [{}])[0]
    occurrence = assessment.get("occurrenceDateTime")
    return Reading(
        reference=reference,
        name=f"Risk signal: {_concept_text(assessment.get('code')) or 'unknown'}",
        value=_concept_text(prediction.get("qualitativeRisk")),
        band="",
        effective=_effective(occurrence) if isinstance(occurrence, str) else "",
        items=[],
        code_names={},
    )


def _group_session_of(store: ResourceStore, reference: str) -> Reading | None:
    """A participant's group session shown as the alert's reading: its attendance."""
    stored = store.read("Encounter", reference.removeprefix("Encounter/"))
    if stored is None:
        return None
    encounter = stored.as_dict()
    code = attendance_of(encounter)
    start = (encounter.get("period") or {}).get("start")
    return Reading(
        reference=reference,
        name="Group session",
        value=ATTENDANCE[code][1] if code in ATTENDANCE else encounter.get("status", ""),
        band="",
        effective=_effective(start) if isinstance(start, str) else "",
        items=[],
        code_names={},
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
_KIND_LABELS: dict[str, str] = {
    AlertEventKind.CARD_ACCEPTED: "Card accepted in the EHR",
    AlertEventKind.CARD_OVERRIDDEN: "Card overridden in the EHR",
}
_CARD_KINDS = (AlertEventKind.CARD_ACCEPTED, AlertEventKind.CARD_OVERRIDDEN)
CDS_ACTOR = "EHR (CDS)"
_SUGGESTIONS = {ACKNOWLEDGE: "Acknowledge", FOLLOW_UP: "Follow-up task"}


def kind_label(kind: str) -> str:
    """A history event's kind in words."""
    return _KIND_LABELS.get(kind, kind.replace(".", " ").capitalize())


def _detail_of(event: AlertEvent) -> dict[str, Any]:
    try:
        detail = orjson.loads(event.detail or "{}")
    except orjson.JSONDecodeError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _card_details(alert_id: str, detail: dict[str, Any]) -> list[tuple[str, str]]:
    """A CDS card outcome: the suggestions taken, the override reason's display."""
    details: list[tuple[str, str]] = []
    accepted = detail.get("accepted_suggestions")
    if isinstance(accepted, list) and accepted:
        names = {suggestion_uuid(alert_id, k): v for k, v in _SUGGESTIONS.items()}
        taken = [names.get(str(s), "another suggestion") for s in accepted[:10]]
        details.append(("suggestions taken", ", ".join(taken)))
    reason = detail.get("reason")
    if isinstance(reason, dict):
        shown = reason.get("display") or reason.get("code")
        if isinstance(shown, str) and shown:
            details.append(("reason", shown[:200]))
    return details


def history_entries(
    alert: Alert, events: list[AlertEvent], names: dict[str, str], now: datetime
) -> list[HistoryEntry]:
    """The alert's events as its history shows them (``names`` from ``history_names``)."""
    entries = []
    for event in events:
        detail = _detail_of(event)
        note = None
        if event.kind in _CARD_KINDS:
            details = _card_details(alert.id, detail)
            comment = detail.get("comment")
            note = comment if isinstance(comment, str) and comment else None
        else:
            details = _pairs(detail)
            recipients = detail.get("recipients")
            if isinstance(recipients, list) and recipients:
                paged = ", ".join(names.get(str(r), str(r)) for r in recipients)
                details = [("paged", paged)] + [(k, v) for k, v in details if k not in _DETAIL_SKIP]
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
                label=kind_label(event.kind),
            )
        )
    return entries


def _recipients(event: AlertEvent) -> list[str]:
    recipients = _detail_of(event).get("recipients")
    return [r for r in recipients if isinstance(r, str)] if isinstance(recipients, list) else []


def history_names(session: Session, tenant_id: str, people: list[str]) -> dict[str, str]:
    """Readable names of who acted or was paged (``actor_labels``; an EHR's CDS calls too)."""
    names = actor_labels(session, tenant_id, people)
    calls = sorted({p.removeprefix("cds:") for p in people if p.startswith("cds:")})
    if calls:
        ehrs = dict(
            session.exec(
                select(CdsClient.iss, EhrConnection.name)
                .join(EhrConnection, col(EhrConnection.id) == col(CdsClient.connection_id))
                .where(col(CdsClient.tenant_id) == tenant_id, col(CdsClient.iss).in_(calls))
            ).all()
        )
        for iss in calls:
            if names.get(f"cds:{iss}", f"cds:{iss}") == f"cds:{iss}":
                ehr = ehrs.get(iss)
                names[f"cds:{iss}"] = f"{ehr} (CDS)" if ehr else CDS_ACTOR
    return names


def _people(alert: Alert, events: list[AlertEvent]) -> list[str]:
    people = [e.actor for e in events if e.actor]
    for event in events:
        people += _recipients(event)
    people += [p for p in (alert.acknowledged_by, alert.resolved_by) if p]
    return people


def alert_histories(
    session: Session, tenant_id: str, alerts: list[Alert], now: datetime
) -> tuple[dict[str, list[HistoryEntry]], dict[str, str]]:
    """Each alert's history (bounded), and the names of who acted on them."""
    if not alerts:
        return {}, {}
    ids = [a.id for a in alerts]
    newest = session.exec(
        select(AlertEvent)
        .where(col(AlertEvent.alert_id).in_(ids))
        .order_by(col(AlertEvent.at).desc(), col(AlertEvent.id).desc())
        .limit(MAX_EVENTS)
    ).all()
    by_alert: dict[str, list[AlertEvent]] = {i: [] for i in ids}
    for event in reversed(newest):  # the latest MAX_EVENTS, oldest first
        by_alert[event.alert_id].append(event)
    people = [p for a in alerts for p in _people(a, by_alert[a.id])]
    names = history_names(session, tenant_id, people)
    return {a.id: history_entries(a, by_alert[a.id], names, now) for a in alerts}, names


@dataclass(frozen=True)
class WithheldAlert:
    """An alert of a patient whose consent keeps it from the care team: only their id shows."""

    patient_id: str


def alert_detail(
    session: Session,
    tenant_id: str,
    alert_id: str,
    now: datetime,
    refused: Callable[[str], bool] = lambda _patient_id: False,
) -> AlertDetail | WithheldAlert | None:
    """The page of ``tenant_id``'s alert ``alert_id``, or None (unknown, or another tenant's).

    ``refused(patient_id)`` says whether the patient's consent withholds it (then nothing
    more of the alert is read).
    """
    if not valid_alert_id(alert_id):
        return None
    alert = session.exec(
        select(Alert).where(col(Alert.id) == alert_id, col(Alert.tenant_id) == tenant_id)
    ).first()
    if alert is None:
        return None
    if refused(alert.patient_id):
        return WithheldAlert(alert.patient_id)
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
    people = _people(alert, events) + [n.recipient for n in notifications]
    names = history_names(session, tenant_id, people)
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
        history=history_entries(alert, events, names, now),
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
