"""Standard Webhooks (https://www.standardwebhooks.com/): signing, verification, delivery.

Symmetric scheme only: ``webhook-signature: v1,<base64(HMAC-SHA256(key, "{id}.{ts}.{body}"))>``
with secrets serialised as ``whsec_<base64(key)>``. Implemented here rather than with the
``standardwebhooks`` package, whose ``verify`` reads the wall clock (no injectable ``now``) and
lets malformed headers escape as ``ValueError`` / ``UnicodeDecodeError``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from careloop.integrations.channels.result import DeliveryResult
from careloop.integrations.channels.retry_after import parse_retry_after
from careloop.integrations.egress import DestinationRefused, Disclosure, EgressClient

log = logging.getLogger("careloop.channels.webhooks")

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60
USER_AGENT = "careloop-webhooks/1"
_MAX_DRAINED_BYTES = 64 * 1024


class WebhookVerificationError(Exception):
    """The request is not an authentic, fresh Standard Webhooks message."""


class InvalidWebhookInput(ValueError):
    """A malformed secret or message id; ``reason`` is a machine-friendly code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def generate_webhook_secret() -> str:
    """A new ``whsec_`` secret holding 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _secret_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidWebhookInput("invalid-secret", "webhook secret is not valid base64") from None
    if not key:
        raise InvalidWebhookInput("invalid-secret", "webhook secret is empty")
    return key


def _check_msg_id(msg_id: str) -> None:
    # The spec asks that ids hold no "." so "{id}.{ts}.{body}" cannot be re-split.
    if not msg_id or "." in msg_id or not msg_id.isprintable() or " " in msg_id:
        raise InvalidWebhookInput(
            "invalid-message-id",
            "webhook id must be non-empty printable text without '.' or spaces",
        )


def _digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign_webhook(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers for ``body``."""
    _check_msg_id(msg_id)
    signature = base64.b64encode(_digest(_secret_key(secret), msg_id, timestamp, body))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + signature.decode("ascii"),
    }


def verify_webhook(
    secret: str, headers: Mapping[str, str], body: bytes, now: int | None = None
) -> None:
    """Raise `WebhookVerificationError` unless a ``v1`` signature matches and is fresh.

    ``body`` must be the raw bytes received. The timestamp must be within 5 minutes of
    ``now`` (default: the current time) either way. `InvalidWebhookInput` (a ``ValueError``)
    means a malformed secret.
    """
    key = _secret_key(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    raw_ts = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and raw_ts and signatures):
        raise WebhookVerificationError("missing webhook headers")
    try:
        _check_msg_id(msg_id)
    except InvalidWebhookInput:
        raise WebhookVerificationError("invalid webhook-id") from None
    if not (raw_ts.isascii() and raw_ts.isdigit() and len(raw_ts) <= 12):
        raise WebhookVerificationError("invalid webhook-timestamp")
    timestamp = int(raw_ts)
    current = int(time.time()) if now is None else now
    if abs(current - timestamp) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("webhook-timestamp outside tolerance")
    expected = _digest(key, msg_id, timestamp, body)
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):
            return
    raise WebhookVerificationError("no matching signature")


def deliver_webhook(
    http: EgressClient,
    url: str,
    secret: str,
    msg_id: str,
    payload: Mapping[str, Any],
    timeout: float = 5.0,
    disclosure: Disclosure | None = None,
) -> DeliveryResult:
    """POST ``payload`` as signed JSON to ``url``; one attempt, never raises on network errors.

    ``msg_id`` must be stable per notification so the receiver can deduplicate retries; the
    timestamp and signature are fresh on every attempt. Redirects are not followed. A malformed
    secret or id is a final failure ("invalid-secret", "invalid-message-id"), not an exception,
    and so is a destination the egress rules refuse ("destination-private", ...). The egress
    client checks ``disclosure``'s consent (raising EgressBlocked) and audits the attempt.
    """
    body = orjson.dumps(payload)
    try:
        headers = sign_webhook(secret, msg_id, int(time.time()), body)
    except InvalidWebhookInput as exc:
        log.warning("webhook not sent: %s", exc.reason)
        return DeliveryResult.failed(exc.reason, retryable=False)
    headers["content-type"] = "application/json"
    headers["user-agent"] = USER_AGENT
    result = _post(http, url, body, headers, timeout, disclosure)
    log.info(
        "webhook attempt msg_id=%s ok=%s status=%s error=%s",
        msg_id,
        result.ok,
        result.status_code,
        result.error,
    )
    return result


def _post(
    http: EgressClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    disclosure: Disclosure | None,
) -> DeliveryResult:
    try:
        with http.stream(
            "POST", url, content=body, headers=headers, timeout=timeout, disclosure=disclosure
        ) as response:
            _drain(response)
            return _classify(response)
    except DestinationRefused as exc:
        if exc.reason == "invalid-url":
            return DeliveryResult.failed("invalid-url", retryable=False)
        return DeliveryResult.failed(f"destination-{exc.reason}", retryable=exc.transient)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        return DeliveryResult.failed("invalid-url", retryable=False)
    except httpx.TimeoutException:
        return DeliveryResult.failed("timeout", retryable=True)
    except httpx.ConnectError:
        return DeliveryResult.failed("connection", retryable=True)
    except httpx.LocalProtocolError:
        return DeliveryResult.failed("request", retryable=False)
    except httpx.TransportError:
        return DeliveryResult.failed("transport", retryable=True)


def _drain(response: httpx.Response) -> None:
    """Read (and drop) a small body so the connection can be reused; never keep it."""
    seen = 0
    for chunk in response.iter_raw():
        seen += len(chunk)
        if seen > _MAX_DRAINED_BYTES:
            return


def _classify(response: httpx.Response) -> DeliveryResult:
    status = response.status_code
    if 200 <= status < 300:
        return DeliveryResult.delivered(status)
    retryable = status in (408, 429) or status >= 500
    retry_after = parse_retry_after(response.headers.get("retry-after")) if retryable else None
    return DeliveryResult.failed(
        f"http-{status}", retryable=retryable, status_code=status, retry_after=retry_after
    )
