"""The CDS Hooks cards careloop shows in the EHR for one patient.

A ``critical`` card for an unresolved critical alert (PHQ-9 item 9 positive), a ``warning``
card for every other unresolved alert, most severe first; when none is unresolved, one ``info``
card with the latest PHQ-9 and GAD-7 totals and their change. Summaries stay under 140
characters and carry no identifier, name or answer: they are built only from careloop's own
words (rule titles, severities) and score totals.

A card's ``uuid`` is the alert's id (careloop's alert ids are UUIDs), so feedback on the card
finds the alert; its suggestions' uuids derive from it (`suggestion_uuid`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import orjson

from careloop.fhir.identifiers import business_identifier
from careloop.fhir.terminology import PHQ9_ITEM9_CODE
from careloop.services.alerts.models import Alert
from careloop.services.alerts.vocabulary import AlertStatus, Severity, severity_rank
from careloop.services.cds.scores import Score

MAX_SUMMARY = 139
SOURCE_LABEL = "careloop"
OVERRIDE_SYSTEM = "https://careloop.example/cds-override-reason"
OVERRIDE_REASONS = (
    ("already-addressed", "Already addressed with the patient"),
    ("not-clinically-relevant", "Not clinically relevant now"),
    ("followed-elsewhere", "Patient followed up by another clinician"),
    ("patient-declined", "Patient declined follow-up"),
)
ACKNOWLEDGE = "acknowledge"
FOLLOW_UP = "follow-up"
_NAMESPACE = uuid.UUID("1f0c7a52-4a56-4d7e-9f1e-9c2a0c6b7d31")
_PRIORITY = {"critical": "stat", "high": "asap", "warning": "urgent", "info": "routine"}


def card_uuid(alert_id: str) -> str:
    """The uuid of the card for alert ``alert_id``: the id itself when it is a UUID."""
    try:
        return str(uuid.UUID(alert_id))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, f"card:{alert_id}"))


def suggestion_uuid(alert_id: str, kind: str) -> str:
    """The uuid of a suggestion (``acknowledge`` or ``follow-up``) on alert ``alert_id``'s card."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{alert_id}"))


def is_item9(alert: Alert) -> bool:
    """Whether the alert is a positive PHQ-9 item 9 (thoughts of death or self-harm)."""
    if alert.rule_id == "phq9-item9":
        return True
    values = _explanation(alert).get("values")
    return isinstance(values, dict) and PHQ9_ITEM9_CODE in values


def _explanation(alert: Alert) -> dict[str, Any]:
    try:
        data = orjson.loads(alert.explanation)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _title(alert: Alert) -> str:
    title = _explanation(alert).get("title")
    return " ".join(str(title).split()) if title else alert.rule_id


def _short(text: str) -> str:
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1].rstrip() + "…"


def _trend(score: Score) -> str:
    change = score.change
    if change is None:
        return "first score"
    if change == 0:
        return "no change"
    return f"{'up' if change > 0 else 'down'} {abs(change)}"


def scores_line(scores: Sequence[Score]) -> str:
    """``PHQ-9 12 (down 3), GAD-7 8 (no change)``."""
    return ", ".join(f"{s.instrument} {s.total} ({_trend(s)})" for s in scores)


def _override_reasons() -> list[dict[str, str]]:
    return [{"system": OVERRIDE_SYSTEM, "code": c, "display": d} for c, d in OVERRIDE_REASONS]


def _source(base_url: str) -> dict[str, str]:
    return {"label": SOURCE_LABEL, "url": base_url}


def _app_link(base_url: str, patient_id: str, alert_id: str | None) -> dict[str, str]:
    context = {"patient": patient_id} | ({"alert": alert_id} if alert_id else {})
    return {
        "label": "Open in careloop",
        "url": f"{base_url}/launch",
        "type": "smart",
        "appContext": orjson.dumps(context).decode(),
    }


def _acknowledge(alert: Alert, ehr_patient_id: str) -> dict[str, Any]:
    task = {
        "resourceType": "Task",
        "id": alert.task_id,
        "identifier": [business_identifier("task", alert.id)],
        "status": "accepted",
        "intent": "order",
        "priority": _PRIORITY.get(alert.severity, "routine"),
        "code": {"text": "Review patient-reported symptom alert"},
        "for": {"reference": f"Patient/{ehr_patient_id}"},
    }
    return {
        "label": "Acknowledge",
        "uuid": suggestion_uuid(alert.id, ACKNOWLEDGE),
        "isRecommended": True,
        "actions": [
            {
                "type": "update",
                "description": "Acknowledge the careloop alert (its Task becomes accepted)",
                "resource": task,
            }
        ],
    }


def _follow_up(alert: Alert, ehr_patient_id: str, item9: bool) -> dict[str, Any]:
    if item9:
        label = "Order a same-day suicide risk assessment (C-SSRS)"
        code = "Suicide risk assessment (Columbia C-SSRS screener), same day"
        priority = "stat"
    else:
        label = "Create a follow-up review task"
        code = "Follow-up review of patient-reported symptoms"
        priority = _PRIORITY.get(alert.severity, "routine")
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": priority,
        "code": {"text": code},
        "description": label,
        "for": {"reference": f"Patient/{ehr_patient_id}"},
        "basedOn": [{"identifier": business_identifier("task", alert.id)}],
    }
    return {
        "label": label,
        "uuid": suggestion_uuid(alert.id, FOLLOW_UP),
        "isRecommended": item9,
        "actions": [{"type": "create", "description": label, "resource": task}],
    }


def _alert_detail(alert: Alert, scores: Sequence[Score], item9: bool) -> str:
    opened = alert.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"**{_title(alert)}**",
        "",
        f"- Severity: {alert.severity}",
        f"- Status: {alert.status}",
        f"- Opened: {opened}; readings that fired it: {alert.occurrences}",
    ]
    if scores:
        lines.append(f"- Latest scores: {scores_line(scores)}")
    if item9:
        lines += ["", "Any answer above 0 on PHQ-9 item 9 needs same-day clinical follow-up."]
    return "\n".join(lines)


def alert_card(
    alert: Alert, scores: Sequence[Score], base_url: str, patient_id: str, ehr_patient_id: str
) -> dict[str, Any]:
    """The card for one unresolved alert."""
    critical = alert.severity == Severity.CRITICAL
    item9 = is_item9(alert)
    state = " (acknowledged)" if alert.status == AlertStatus.ACKNOWLEDGED else ""
    summary = _short(f"careloop {alert.severity} alert{state}: {_title(alert)}")
    suggestions = []
    if alert.status == AlertStatus.OPEN:
        suggestions.append(_acknowledge(alert, ehr_patient_id))
    suggestions.append(_follow_up(alert, ehr_patient_id, item9))
    return {
        "uuid": card_uuid(alert.id),
        "summary": summary,
        "indicator": "critical" if critical else "warning",
        "detail": _alert_detail(alert, scores, item9),
        "source": _source(base_url),
        "suggestions": suggestions,
        "selectionBehavior": "any",
        "overrideReasons": _override_reasons(),
        "links": [_app_link(base_url, patient_id, alert.id)],
    }


def info_card(
    scores: Sequence[Score], base_url: str, patient_id: str, tenant_id: str
) -> dict[str, Any]:
    """The card when no alert is unresolved: the latest scores and their trend."""
    latest = scores_line(scores)
    marker = f"info:{tenant_id}:{patient_id}:{latest}"
    return {
        "uuid": str(uuid.uuid5(_NAMESPACE, marker)),
        "summary": _short(f"careloop: {latest}; no open alerts"),
        "indicator": "info",
        "detail": "Latest patient-reported totals, change since the previous one:\n\n"
        + "\n".join(f"- {s.instrument}: {s.total} ({_trend(s)})" for s in scores),
        "source": _source(base_url),
        "links": [_app_link(base_url, patient_id, None)],
    }


def cards_for(
    alerts: Sequence[Alert],
    scores: Sequence[Score],
    base_url: str,
    tenant_id: str,
    patient_id: str,
    ehr_patient_id: str,
) -> list[dict[str, Any]]:
    """The patient's cards: one per unresolved alert (most severe, then newest, first), else
    one info card with the scores (none without scores)."""
    base = base_url.rstrip("/")
    ordered = sorted(
        alerts, key=lambda a: (severity_rank(a.severity), a.opened_at.timestamp()), reverse=True
    )
    if ordered:
        return [alert_card(a, scores, base, patient_id, ehr_patient_id) for a in ordered]
    if scores:
        return [info_card(scores, base, patient_id, tenant_id)]
    return []
