"""Delivering one notification through the egress gate, recording every attempt."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlmodel import Session, select

from careloop.fhir.alerts import map_alert_communication
from careloop.integrations.channels import (
    DeliveryResult,
    EmailReason,
    SmtpConfig,
    deliver_webhook,
    send_alert_email,
)
from careloop.integrations.channels.email import MAX_TITLE, SEVERITIES
from careloop.integrations.egress import (
    Disclosure,
    EgressBlocked,
    EgressClient,
    send,
)
from careloop.services.alerts.firing import reasons_of, summary
from careloop.services.alerts.models import Alert, DeliveryAttempt, Notification
from careloop.services.alerts.service import alert_json
from careloop.services.alerts.vocabulary import Channel, NotificationEvent, NotificationStatus
from careloop.services.common.egress import destination_policy, egress_client
from careloop.services.db import utcnow
from careloop.services.ehr.pushes import resources_changed
from careloop.services.metrics.recording import notification_attempted, report_notified
from careloop.services.outbox.events import EventType
from careloop.services.outbox.models import DeadTask
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore
from careloop.workflows.backoff import backoff
from careloop.workflows.faults import crash_point


@dataclass(frozen=True)
class DeliveryOutcome:
    """What became of one delivery call: done, to retry after ``retry_in``, or given up."""

    done: bool
    retry_in: float | None = None


def _line(text: str) -> str:
    return "".join(c if c.isprintable() else " " for c in text).strip()[:MAX_TITLE]


def _reasons(alert: Alert) -> list[dict[str, str]]:
    """Every reason of ``alert`` as messages carry it: the rule, its severity and its title
    (care program text); never the values, which are the patient's scores and answers."""
    reasons = []
    for r in reasons_of(orjson.loads(alert.explanation)):
        rule = str(r.get("rule") or alert.rule_id)
        severity = r.get("severity")
        reasons.append(
            {
                "rule": rule,
                "severity": severity if severity in SEVERITIES else alert.severity,
                "title": _line(str(r.get("title") or "")) or rule,
            }
        )
    return reasons


def _payload(notification: Notification, alert: Alert, settings: Settings) -> dict[str, Any]:
    # The alert without its explanation (scores, answers) and notes (free text): ids, severity,
    # rules and their titles only.
    withheld = {"explanation": None, "acknowledgement_note": None, "resolution_note": None}
    return {
        "type": f"alert.{notification.event}",
        "notification": notification.id,
        "alert": alert_json(alert, settings.base_url) | withheld,
        "severity": alert.severity,
        "rule": alert.rule_id,
        "reasons": _reasons(alert),
        "patient": f"Patient/{alert.patient_id}",
        "task": f"Task/{alert.task_id}",
        "recipient": notification.recipient,
    }


def smtp_config(settings: Settings) -> SmtpConfig:
    """The SMTP server from settings (checked against the egress rules when sending)."""
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_sender,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        tls=settings.smtp_tls,
    )


def _transfer(
    http: EgressClient,
    notification: Notification,
    alert: Alert,
    settings: Settings,
    disclosure: Disclosure,
) -> DeliveryResult:
    """One attempt. A webhook gets consent and audit from the egress client per request; any
    other channel from ``send`` (the audit names the recipient's domain, never the address)."""
    if notification.channel == Channel.WEBHOOK:
        return deliver_webhook(
            http,
            notification.address,
            notification.secret or "",
            notification.id,
            _payload(notification, alert, settings),
            disclosure=disclosure,
        )
    destination = f"{notification.channel}:{notification.address.rpartition('@')[2]}"[:300]
    return send(
        http.guard,
        destination,
        disclosure,
        lambda: _other_channel(notification, alert, settings),
        lambda r: r.ok,
    )


def _other_channel(notification: Notification, alert: Alert, settings: Settings) -> DeliveryResult:
    if notification.channel == Channel.EMAIL:
        if not settings.smtp_host:
            return DeliveryResult(False, False, None, "smtp-not-configured", None)
        return send_alert_email(
            smtp_config(settings),
            destination_policy(settings),
            notification.address,
            alert.id,
            alert.severity,
            str(alert_json(alert, settings.base_url)["link"]),
            notification_id=notification.id,
            reasons=[EmailReason(r["severity"], r["title"]) for r in _reasons(alert)],
        )
    return DeliveryResult(False, False, None, f"unknown-channel-{notification.channel}", None)


def deliver_notification(
    session: Session, settings: Settings, notification_id: str
) -> DeliveryOutcome:
    """One delivery attempt of ``notification_id``; safe to call again for the same id.

    The notification row stays locked while sending, so a redelivered task waits and then
    finds it delivered instead of sending twice.
    """
    notification = session.exec(
        select(Notification).where(Notification.id == notification_id).with_for_update()
    ).first()
    if notification is None or notification.status != NotificationStatus.PENDING:
        return DeliveryOutcome(True)
    alert = session.get(Alert, notification.alert_id)
    assert alert is not None
    http = egress_client(
        session, settings, notification.tenant_id, notification.channel, "careloop-worker"
    )
    disclosure = Disclosure(alert.patient_id, (f"Task/{alert.task_id}",))
    started = time.perf_counter()
    try:
        result = _transfer(http, notification, alert, settings, disclosure)
    except EgressBlocked:
        notification.status = NotificationStatus.BLOCKED
        session.add(notification)
        notification_attempted(session, notification.channel, "blocked")
        return DeliveryOutcome(True)
    crash_point("after-send")
    notification.attempts += 1
    session.add(
        DeliveryAttempt(
            notification_id=notification.id,
            ok=result.ok,
            status_code=result.status_code,
            error=result.error,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
    )
    notification_attempted(session, notification.channel, "sent" if result.ok else "failed")
    if result.ok:
        now = utcnow()
        notification.status = NotificationStatus.DELIVERED
        notification.delivered_at = now
        if notification.event != NotificationEvent.ESCALATED:  # escalations wait on purpose
            report_notified(session, alert.observation_id, alert.severity, now)
        communication = map_alert_communication(
            notification.id,
            alert.id,
            alert.patient_id,
            alert.observation_id,
            notification.recipient,
            notification.channel,
            now,
            summary(orjson.loads(alert.explanation)) or alert.rule_id,
        )
        notification.communication_id = communication["id"]
        ResourceStore(session, notification.tenant_id).create_many([communication])
        resources_changed(
            session,
            notification.tenant_id,
            {alert.patient_id: [f"Communication/{communication['id']}"]},
        )
        session.add(notification)
        return DeliveryOutcome(True)
    if result.retryable and notification.attempts < settings.delivery_max_attempts:
        session.add(notification)
        return DeliveryOutcome(False, backoff(notification.attempts, result.retry_after))
    notification.status = NotificationStatus.FAILED
    session.add(notification)
    session.add(
        DeadTask(
            task=EventType.NOTIFICATION_REQUESTED,
            payload=orjson.dumps({"notification_id": notification.id}).decode(),
            error=f"delivery failed: {result.error or result.status_code}",
            attempts=notification.attempts,
        )
    )
    return DeliveryOutcome(True)
