"""Standard Webhooks signing and verification, without a network."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from careloop.integrations.channels import (
    WebhookVerificationError,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook,
)
from careloop.integrations.channels.retry_after import parse_retry_after

# Known-answer vector shared by the Standard Webhooks reference libraries' test suites.
KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KAT_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KAT_TIMESTAMP = 1614265330
KAT_BODY = b'{"test": 2432232314}'
KAT_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000
BODY = b'{"alert_id":"alert-0001","severity":"critical"}'


def test_known_answer_signature() -> None:
    headers = sign_webhook(KAT_SECRET, KAT_ID, KAT_TIMESTAMP, KAT_BODY)
    assert headers == {
        "webhook-id": KAT_ID,
        "webhook-timestamp": str(KAT_TIMESTAMP),
        "webhook-signature": KAT_SIGNATURE,
    }
    verify_webhook(KAT_SECRET, headers, KAT_BODY, now=KAT_TIMESTAMP)
    # The prefix is optional on input, as in the reference libraries.
    verify_webhook(KAT_SECRET.removeprefix("whsec_"), headers, KAT_BODY, now=KAT_TIMESTAMP)


def test_generated_secret_is_whsec_with_32_random_bytes() -> None:
    first, second = generate_webhook_secret(), generate_webhook_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert first != second


def test_round_trip_with_any_header_case() -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    verify_webhook(secret, {k.upper(): v for k, v in headers.items()}, BODY, now=NOW)


def test_tampered_body_fails() -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify_webhook(secret, headers, BODY.replace(b"critical", b"info"), now=NOW)


def test_wrong_secret_fails() -> None:
    headers = sign_webhook(generate_webhook_secret(), "msg_0001", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify_webhook(generate_webhook_secret(), headers, BODY, now=NOW)


def test_id_and_timestamp_are_signed() -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, {**headers, "webhook-id": "msg_0002"}, BODY, now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, {**headers, "webhook-timestamp": str(NOW + 1)}, BODY, now=NOW)


@pytest.mark.parametrize("skew", [-300, 300])
def test_timestamp_at_tolerance_edge_passes(skew: int) -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    verify_webhook(secret, headers, BODY, now=NOW + skew)


@pytest.mark.parametrize("skew", [-301, 301, 86_400])
def test_timestamp_outside_tolerance_fails(skew: int) -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(secret, headers, BODY, now=NOW + skew)


def test_stale_timestamp_fails_against_wall_clock() -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)  # 2023: long past
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(secret, headers, BODY)


def test_any_listed_v1_signature_may_match_for_key_rotation() -> None:
    old, new = generate_webhook_secret(), generate_webhook_secret()
    old_sig = sign_webhook(old, "msg_0001", NOW, BODY)["webhook-signature"]
    headers = sign_webhook(new, "msg_0001", NOW, BODY)
    headers["webhook-signature"] = f"v1a,AAAA {old_sig} v2,xyz {headers['webhook-signature']}"
    verify_webhook(new, headers, BODY, now=NOW)
    verify_webhook(old, headers, BODY, now=NOW)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook-signature", "v1"),
        ("webhook-signature", "v1,not base64!"),
        ("webhook-signature", "v1,a,b"),
        ("webhook-signature", ""),
        ("webhook-timestamp", "1.7e9"),
        ("webhook-timestamp", "-1700000000"),
        ("webhook-timestamp", "nan"),
        ("webhook-id", "msg.0001"),
        ("webhook-id", ""),
    ],
)
def test_malformed_headers_fail_cleanly(name: str, value: str) -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    headers[name] = value
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, BODY, now=NOW)


def test_missing_header_fails() -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    del headers["webhook-id"]
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook(secret, headers, BODY, now=NOW)


def test_non_utf8_body_fails_cleanly() -> None:
    secret = generate_webhook_secret()
    headers = sign_webhook(secret, "msg_0001", NOW, BODY)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, headers, b"\xff\xfe", now=NOW)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg\n1"])
def test_sign_rejects_ambiguous_ids(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        sign_webhook(generate_webhook_secret(), msg_id, NOW, BODY)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!not-base64!!"])
def test_malformed_secret_is_a_value_error(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        sign_webhook(secret, "msg_0001", NOW, BODY)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    later = datetime(2026, 1, 1, 12, 2, tzinfo=UTC)
    earlier = datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(format_datetime(later, usegmt=True), now=now) == 120.0
    assert parse_retry_after(format_datetime(earlier, usegmt=True), now=now) == 0.0
    for bad in (None, "", "-5", "1.5", "soon"):
        assert parse_retry_after(bad, now=now) is None
