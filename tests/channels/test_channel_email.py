"""Alert email against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from support.smtp import SmtpServer

from careloop.integrations.channels import (
    DeliveryResult,
    EmailReason,
    InvalidAlertEmail,
    SmtpConfig,
    build_alert_email,
    send_alert_email,
)
from careloop.integrations.egress import DestinationPolicy

SENDER = "careloop alerts <alerts@careloop.example>"
TO = "dr.synthetic@clinic.example"
ALERT_ID = "alert-7f3a9c"
LINK = "https://app.careloop.example/alerts/alert-7f3a9c"
# Synthetic patient data that exists only here: it is passed to nothing.
PATIENT_ID = "PAT-SYNTH-4711"
LOOPBACK_ALLOWED = DestinationPolicy.create(production=False)
PATIENT_SCORE = "PHQ-9 score 23"
WAIT = 5.0

EXPECTED_BODY = (
    "A critical alert in careloop needs review.\n"
    "\n"
    "Open it in careloop (sign-in required):\n"
    f"{LINK}\n"
    "\n"
    f"Alert id: {ALERT_ID}\n"
    "\n"
    "This email holds no patient information by design. Do not reply to it.\n"
)


def _send(config: SmtpConfig, **kwargs: Any) -> DeliveryResult:
    return send_alert_email(config, LOOPBACK_ALLOWED, TO, ALERT_ID, "critical", LINK, **kwargs)


def test_alert_email_arrives_with_only_the_given_fields(smtp: SmtpServer) -> None:
    result = _send(smtp.config(SENDER, WAIT))

    assert result == DeliveryResult(
        ok=True, retryable=False, status_code=250, error=None, retry_after=None
    )
    [(mail_from, rcpt_tos, raw)] = smtp.collector.messages
    assert mail_from == "alerts@careloop.example"
    assert rcpt_tos == [TO]
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["To"] == TO
    assert msg["Subject"] == "careloop: critical alert needs review"
    assert msg["X-Careloop-Alert-Id"] == ALERT_ID
    body = msg.get_content().replace("\r\n", "\n")  # as received: CRLF line ends
    assert LINK in body and ALERT_ID in body
    assert body == EXPECTED_BODY
    assert PATIENT_ID.encode() not in raw and PATIENT_SCORE.encode() not in raw
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()


def test_built_message_holds_exactly_the_expected_headers() -> None:
    msg = build_alert_email(SENDER, TO, ALERT_ID, "critical", LINK)

    assert sorted(msg.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "X-Careloop-Alert-Id",
            "Auto-Submitted",
            "Content-Type",
            "Content-Transfer-Encoding",
            "MIME-Version",
        ]
    )
    assert msg["From"] == SENDER
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content() == EXPECTED_BODY


def test_message_id_is_stable_per_alert_and_recipient() -> None:
    def message_id(to: str, alert_id: str, notification_id: str | None = None) -> str:
        msg = build_alert_email(SENDER, to, alert_id, "high", LINK, notification_id=notification_id)
        return str(msg["Message-ID"])

    first = message_id(TO, ALERT_ID)
    assert first == message_id(TO.upper(), ALERT_ID)
    assert first.startswith("<alert-") and first.endswith("@careloop.example>")
    assert ALERT_ID not in first and "synthetic" not in first
    assert message_id("other.synthetic@clinic.example", ALERT_ID) != first
    assert message_id(TO, "alert-other") != first
    assert message_id(TO, ALERT_ID, "ntf-1") == message_id(TO, ALERT_ID, "ntf-1") != first
    assert message_id(TO, ALERT_ID, "ntf-2") != message_id(TO, ALERT_ID, "ntf-1")


@pytest.mark.parametrize(
    ("stage", "reply", "retryable"),
    [
        ("rcpt", "550 5.1.1 No such user", False),
        ("rcpt", "451 4.7.1 Greylisted, try again later", True),
        ("data", "451 4.3.0 Temporary failure", True),
        ("data", "554 5.7.1 Rejected by policy", False),
    ],
)
def test_smtp_rejections_are_classified_by_code(
    smtp: SmtpServer, stage: str, reply: str, retryable: bool
) -> None:
    setattr(smtp.collector, f"{stage}_reply", reply)
    code = int(reply[:3])

    result = _send(smtp.config(SENDER, WAIT))

    assert result == DeliveryResult(
        ok=False, retryable=retryable, status_code=code, error=f"smtp-{code}", retry_after=None
    )
    assert smtp.collector.messages == []


def test_starttls_required_but_not_offered_is_final(smtp: SmtpServer) -> None:
    config = SmtpConfig(smtp.host, smtp.port, SENDER, starttls=True, timeout=WAIT)
    result = _send(config)
    assert (result.ok, result.retryable, result.error) == (False, False, "smtp-unsupported")
    assert smtp.collector.messages == []


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        config = SmtpConfig("127.0.0.1", probe.getsockname()[1], SENDER, timeout=WAIT)
        result = _send(config)

    assert result == DeliveryResult(
        ok=False, retryable=True, status_code=None, error="connection", retry_after=None
    )


def test_server_that_never_greets_times_out() -> None:
    accepted, release = threading.Event(), threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)

        def hold() -> None:
            conn, _ = listener.accept()
            with conn:
                accepted.set()
                release.wait(WAIT)

        thread = threading.Thread(target=hold)
        thread.start()
        started = time.monotonic()
        try:
            result = _send(SmtpConfig("127.0.0.1", listener.getsockname()[1], SENDER, timeout=0.5))
        finally:
            release.set()
            thread.join(WAIT)

    assert (result.ok, result.retryable, result.error) == (False, True, "timeout")
    assert accepted.is_set()
    assert time.monotonic() - started < WAIT


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("severity", "Jane Doe"),
        ("alert_id", f"{PATIENT_ID} {PATIENT_SCORE}"),
        ("link", "javascript:alert(1)"),
        ("link", "/alerts/relative"),
        ("to", "not-an-address"),
        ("to", "dr@clinic.example\nBcc: spy@elsewhere.example"),
    ],
)
def test_fields_that_could_carry_anything_else_are_refused(
    smtp: SmtpServer, field_name: str, value: str
) -> None:
    fields = {"to": TO, "alert_id": ALERT_ID, "severity": "critical", "link": LINK}
    fields[field_name] = value
    with pytest.raises(InvalidAlertEmail) as refused:
        build_alert_email(SENDER, **fields)

    result = send_alert_email(smtp.config(SENDER, WAIT), LOOPBACK_ALLOWED, **fields)

    assert refused.value.reason.startswith("invalid-")
    assert result == DeliveryResult(
        ok=False, retryable=False, status_code=None, error=refused.value.reason, retry_after=None
    )
    assert smtp.collector.messages == []


def test_credentials_require_starttls_and_stay_out_of_repr() -> None:
    with pytest.raises(ValueError, match="starttls"):
        SmtpConfig("smtp.example", 587, SENDER, username="u", password="p")
    with pytest.raises(ValueError, match="together"):
        SmtpConfig("smtp.example", 587, SENDER, username="u", starttls=True)
    config = SmtpConfig(
        "smtp.example", 587, SENDER, username="u", password="hunter2-synthetic", starttls=True
    )
    assert "hunter2-synthetic" not in repr(config)


def _resolving(answers: list[list[str]]) -> Any:
    """A resolver seam answering each lookup with the next of ``answers`` (the last repeats)."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[Any]:
        lookups.append(host)
        return [ipaddress.ip_address(a) for a in answers[min(len(lookups), len(answers)) - 1]]

    return resolve


def test_production_refuses_smtp_without_tls_before_connecting(smtp: SmtpServer) -> None:
    production = DestinationPolicy.create(production=True, allow="127.0.0.1")
    result = send_alert_email(smtp.config(SENDER, WAIT), production, TO, ALERT_ID, "critical", LINK)
    assert (result.ok, result.retryable, result.error) == (False, False, "destination-tls-required")
    assert smtp.collector.messages == []


@pytest.mark.parametrize("host", ["10.0.0.25", "169.254.169.254", "metadata.google.internal"])
def test_an_internal_smtp_host_is_refused(host: str) -> None:
    result = _send(SmtpConfig(host, 25, SENDER, timeout=WAIT))
    assert (result.ok, result.retryable) == (False, False)
    assert result.error is not None and result.error.startswith("destination-")


def test_smtp_connects_to_the_checked_address_under_the_name(smtp: SmtpServer) -> None:
    # The name exists only in the resolver seam: had the OS resolved it, the send had failed.
    policy = DestinationPolicy.create(
        production=False, allow="127.0.0.0/8", resolver=_resolving([["127.0.0.1"]])
    )
    config = SmtpConfig("mail.careloop-test.example", smtp.port, SENDER, timeout=WAIT)
    result = send_alert_email(config, policy, TO, ALERT_ID, "critical", LINK)
    assert result.ok, result
    assert len(smtp.collector.messages) == 1


def test_an_smtp_name_rebinding_to_loopback_is_refused_when_connecting(smtp: SmtpServer) -> None:
    policy = DestinationPolicy.create(
        production=False,
        allow_loopback=False,
        resolver=_resolving([["93.184.215.14"], ["127.0.0.1"]]),
    )
    config = SmtpConfig("mail.careloop-test.example", smtp.port, SENDER, timeout=WAIT)
    result = send_alert_email(config, policy, TO, ALERT_ID, "critical", LINK)
    assert (result.ok, result.error) == (False, "destination-loopback")
    assert smtp.collector.messages == []


REASONS = [
    EmailReason("critical", "PHQ-9 item 9 positive: thoughts of death or self-harm"),
    EmailReason("high", "PHQ-9 total at or above threshold"),
]


def test_every_reason_is_listed_by_severity_and_title(smtp: SmtpServer) -> None:
    result = _send(smtp.config(SENDER, WAIT), reasons=REASONS)

    assert result.ok
    [(_, _, raw)] = smtp.collector.messages
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_content().replace("\r\n", "\n")
    head, _, rest = EXPECTED_BODY.partition("Open it")
    assert body == (
        f"{head}Why:\n"
        "- PHQ-9 item 9 positive: thoughts of death or self-harm (critical)\n"
        "- PHQ-9 total at or above threshold (high)\n"
        f"\nOpen it{rest}"
    )


@pytest.mark.parametrize(
    "reasons",
    [
        [EmailReason("critical", "total 23\nBcc: spy@elsewhere.example")],
        [EmailReason("Jane Doe", "PHQ-9 total at or above threshold")],
        [EmailReason("high", "")],
        [EmailReason("high", "t" * 201)],
        [EmailReason("high", "t")] * 21,
    ],
)
def test_reasons_that_could_carry_anything_else_are_refused(
    smtp: SmtpServer, reasons: list[EmailReason]
) -> None:
    with pytest.raises(InvalidAlertEmail) as refused:
        build_alert_email(SENDER, TO, ALERT_ID, "critical", LINK, reasons=reasons)

    result = _send(smtp.config(SENDER, WAIT), reasons=reasons)

    assert refused.value.reason == "invalid-reason"
    assert (result.ok, result.retryable, result.error) == (False, False, "invalid-reason")
    assert smtp.collector.messages == []
