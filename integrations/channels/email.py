"""Alert email over SMTP that carries no PHI: severity, the reasons' titles, an id and a link.

No patient identifier, name, score, answer or note ever goes into the message; the clinician
signs in to careloop to see them. A reason is a care program's rule title (the same text for
every patient). The link must point at the alert, not carry patient data.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import urlsplit

from careloop.integrations.channels.result import DeliveryResult
from careloop.integrations.egress import DestinationPolicy, DestinationRefused
from careloop.integrations.egress.smtp import check_smtp, open_smtp

log = logging.getLogger("careloop.channels.email")

SEVERITIES = frozenset({"critical", "high", "warning", "info"})
_ALERT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_REASONS = 20
MAX_TITLE = 200


class InvalidAlertEmail(ValueError):
    """A field that cannot go into an alert email; ``reason`` is a machine-friendly code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class EmailReason:
    """One reason an alert fired: the rule's severity and title (care program text, no PHI)."""

    severity: str
    title: str


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to submit mail. Credentials are only sent over TLS (STARTTLS or implicit)."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout: float = 10.0
    tls: bool = False
    """Implicit TLS from the first byte (SMTPS, usually port 465)."""

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP username and password go together")
        if self.username is not None and not (self.starttls or self.tls):
            raise ValueError("SMTP credentials require starttls or tls")
        if self.starttls and self.tls:
            raise ValueError("SMTP uses starttls or implicit tls, not both")

    def check(self, policy: DestinationPolicy) -> None:
        """Raise DestinationRefused unless ``policy`` allows this server (TLS in production)."""
        check_smtp(policy, self.host, self.port, self.starttls, self.tls)


def _address(value: str, what: str) -> str:
    addr = parseaddr(value)[1]
    if "@" not in addr or not value.isprintable() or any(c.isspace() for c in addr):
        raise InvalidAlertEmail(f"invalid-{what}", f"invalid {what} address")
    return addr


def _check_link(link: str) -> None:
    parts = urlsplit(link)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise InvalidAlertEmail("invalid-link", "link must be an absolute http(s) URL")
    if not link.isprintable() or " " in link:
        raise InvalidAlertEmail("invalid-link", "link must not hold spaces or control characters")


def _reason_lines(reasons: Sequence[EmailReason]) -> str:
    if len(reasons) > MAX_REASONS:
        raise InvalidAlertEmail("invalid-reason", f"at most {MAX_REASONS} reasons")
    lines = []
    for reason in reasons:
        if reason.severity not in SEVERITIES:
            raise InvalidAlertEmail("invalid-reason", "a reason's severity is not known")
        if not (0 < len(reason.title) <= MAX_TITLE and reason.title.isprintable()):
            raise InvalidAlertEmail(
                "invalid-reason", f"a reason's title must be 1-{MAX_TITLE} printable characters"
            )
        lines.append(f"- {reason.title} ({reason.severity})\n")
    return "Why:\n" + "".join(lines) + "\n" if lines else ""


def _message_id(alert_id: str, recipient: str, notification_id: str | None, domain: str) -> str:
    key = "\n".join((alert_id, recipient.lower(), notification_id or ""))
    return f"<alert-{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


def build_alert_email(
    sender: str,
    to: str,
    alert_id: str,
    severity: str,
    link: str,
    *,
    notification_id: str | None = None,
    reasons: Sequence[EmailReason] = (),
) -> EmailMessage:
    """A plain-text alert email holding only ``severity``, ``reasons``, ``alert_id`` and ``link``.

    The ``Message-ID`` is derived from the alert id and recipient (plus ``notification_id``
    when given), so a retried send has the same id and can be deduplicated; pass the
    notification id so that a later event on the same alert is not taken for a duplicate.
    """
    if severity not in SEVERITIES:
        raise InvalidAlertEmail("invalid-severity", f"severity must be one of {sorted(SEVERITIES)}")
    if not _ALERT_ID.fullmatch(alert_id):
        raise InvalidAlertEmail("invalid-alert-id", "alert id must be 1-64 of [A-Za-z0-9._-]")
    if notification_id is not None and not _ALERT_ID.fullmatch(notification_id):
        raise InvalidAlertEmail(
            "invalid-notification-id", "notification id must be 1-64 of [A-Za-z0-9._-]"
        )
    _check_link(link)
    why = _reason_lines(reasons)
    from_addr = _address(sender, "sender")
    to_addr = _address(to, "recipient")

    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = f"careloop: {severity} alert needs review"
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = _message_id(
        alert_id, to_addr, notification_id, from_addr.rpartition("@")[2]
    )
    msg["X-Careloop-Alert-Id"] = alert_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"A {severity} alert in careloop needs review.\n"
        "\n"
        f"{why}"
        "Open it in careloop (sign-in required):\n"
        f"{link}\n"
        "\n"
        f"Alert id: {alert_id}\n"
        "\n"
        "This email holds no patient information by design. Do not reply to it.\n"
    )
    return msg


def send_alert_email(
    config: SmtpConfig,
    policy: DestinationPolicy,
    to: str,
    alert_id: str,
    severity: str,
    link: str,
    *,
    notification_id: str | None = None,
    reasons: Sequence[EmailReason] = (),
) -> DeliveryResult:
    """Submit one alert email; one attempt, never raises on SMTP or network errors.

    5xx replies (including a refused recipient) are final; 4xx replies, disconnects,
    connection errors and timeouts are retryable. ``status_code`` is the SMTP reply code.
    A field `build_alert_email` refuses is a final failure (e.g. "invalid-recipient"), and so is
    a server ``policy`` refuses ("destination-tls-required", "destination-private", ...); the
    connection goes to an address ``policy`` checked when connecting.
    """
    try:
        msg = build_alert_email(
            config.sender,
            to,
            alert_id,
            severity,
            link,
            notification_id=notification_id,
            reasons=reasons,
        )
    except InvalidAlertEmail as exc:
        result = DeliveryResult.failed(exc.reason, retryable=False)
    else:
        from_addr, to_addr = _address(config.sender, "sender"), _address(to, "recipient")
        result = _send(config, policy, msg, from_addr, to_addr)
    log.info(
        "email attempt alert_id=%s ok=%s status=%s error=%s",
        alert_id,
        result.ok,
        result.status_code,
        result.error,
    )
    return result


def _send(
    config: SmtpConfig, policy: DestinationPolicy, msg: EmailMessage, from_addr: str, to_addr: str
) -> DeliveryResult:
    try:
        config.check(policy)
    except DestinationRefused as exc:
        return DeliveryResult.failed(f"destination-{exc.reason}", retryable=exc.transient)
    smtp = open_smtp(policy, config.tls, config.timeout)
    try:
        code, reply = smtp.connect(config.host, config.port)
        if code != 220:
            raise smtplib.SMTPConnectError(code, reply)
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if config.username is not None and config.password is not None:
            smtp.login(config.username, config.password)
        smtp.send_message(msg, from_addr=from_addr, to_addrs=[to_addr])
    except smtplib.SMTPRecipientsRefused as exc:
        _quit_quietly(smtp)
        codes = [code for code, _ in exc.recipients.values()]
        return _by_code(codes[0] if codes else 550)
    except smtplib.SMTPResponseException as exc:
        _quit_quietly(smtp)
        return _by_code(exc.smtp_code)
    except DestinationRefused as exc:  # the name resolved differently when connecting
        return DeliveryResult.failed(f"destination-{exc.reason}", retryable=exc.transient)
    except smtplib.SMTPNotSupportedError:
        _quit_quietly(smtp)
        return DeliveryResult.failed("smtp-unsupported", retryable=False)
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib turns a read timeout into a disconnect; the timeout is kept as context.
        timed_out = isinstance(exc.__context__, TimeoutError)
        return DeliveryResult.failed("timeout" if timed_out else "connection", retryable=True)
    except TimeoutError:
        return DeliveryResult.failed("timeout", retryable=True)
    except ssl.SSLError:
        return DeliveryResult.failed("tls", retryable=True)
    except (OSError, smtplib.SMTPException):
        return DeliveryResult.failed("connection", retryable=True)
    else:
        _quit_quietly(smtp)
        return DeliveryResult.delivered(250)
    finally:
        smtp.close()


def _by_code(code: int) -> DeliveryResult:
    return DeliveryResult.failed(f"smtp-{code}", retryable=not 500 <= code < 600, status_code=code)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """Say goodbye when the session is still sane; the outcome is already decided."""
    with suppress(smtplib.SMTPException, OSError):
        smtp.quit()
