"""Webhook delivery against real receivers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from careloop.integrations.channels import (
    DeliveryResult,
    WebhookVerificationError,
    generate_webhook_secret,
    verify_webhook,
)
from careloop.integrations.channels import deliver_webhook as deliver_through
from careloop.integrations.egress import DestinationPolicy, EgressClient, EgressEvent, EgressHttp
from careloop.integrations.egress.gate import Guard

PAYLOAD = {"type": "alert.opened", "alert_id": "alert-0001", "severity": "critical"}
WAIT = 5.0
LOOPBACK_ALLOWED = DestinationPolicy.create(production=False)
AUDITED: list[EgressEvent] = []


def _egress(http: EgressHttp) -> EgressClient:
    guard = Guard("tenant-test", "test", lambda _p, _purpose: None, AUDITED.append)
    return EgressClient(http, guard, "webhook")


_HTTP = EgressHttp(LOOPBACK_ALLOWED)


def deliver_webhook(
    url: str, secret: str, msg_id: str, payload: dict[str, str], timeout: float = 5.0
) -> DeliveryResult:
    """One attempt through an egress client under the dev/test rules (loopback allowed)."""
    return deliver_through(_egress(_HTTP), url, secret, msg_id, payload, timeout)


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    verification_error: str | None


@dataclass
class Receiver:
    """A threaded HTTP endpoint that verifies signatures and answers as configured."""

    secret: str
    url: str = ""
    status: int = 204
    reply_headers: dict[str, str] = field(default_factory=dict)
    reply_body: bytes = b""
    deliveries: list[Delivery] = field(default_factory=list)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            error: str | None = None
            try:
                verify_webhook(receiver.secret, headers, body)
            except WebhookVerificationError as exc:
                error = str(exc)
            receiver.deliveries.append(Delivery(headers, body, error))
            self.send_response(401 if error else receiver.status)
            for name, value in receiver.reply_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(receiver.reply_body)))
            self.end_headers()
            self.wfile.write(receiver.reply_body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(secret=generate_webhook_secret())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))  # bound and listening
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/careloop"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def _deliver(
    receiver: Receiver, msg_id: str = "msg_0001", http: EgressHttp | None = None
) -> DeliveryResult:
    return deliver_through(_egress(http or _HTTP), receiver.url, receiver.secret, msg_id, PAYLOAD)


def test_delivery_arrives_signed_with_payload(receiver: Receiver) -> None:
    result = _deliver(receiver)

    assert result == DeliveryResult(
        ok=True, retryable=False, status_code=204, error=None, retry_after=None
    )
    [delivery] = receiver.deliveries
    assert delivery.verification_error is None
    assert orjson.loads(delivery.body) == PAYLOAD
    assert delivery.headers["webhook-id"] == "msg_0001"
    assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["user-agent"] == "careloop-webhooks/1"


def test_retries_keep_the_message_id(receiver: Receiver) -> None:
    assert _deliver(receiver, "msg_stable").ok
    assert _deliver(receiver, "msg_stable").ok
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == ["msg_stable"] * 2


def test_received_body_tampered_fails_verification(receiver: Receiver) -> None:
    assert _deliver(receiver).ok
    [delivery] = receiver.deliveries
    tampered = delivery.body.replace(b"critical", b"info")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(receiver.secret, delivery.headers, tampered)


def test_received_timestamp_outside_tolerance_fails(receiver: Receiver) -> None:
    assert _deliver(receiver).ok
    [delivery] = receiver.deliveries
    sent_at = int(delivery.headers["webhook-timestamp"])
    verify_webhook(receiver.secret, delivery.headers, delivery.body, now=sent_at + 300)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(receiver.secret, delivery.headers, delivery.body, now=sent_at + 301)


def test_wrong_secret_is_rejected_by_receiver(receiver: Receiver) -> None:
    result = deliver_webhook(receiver.url, generate_webhook_secret(), "msg_0001", PAYLOAD)

    assert (result.ok, result.retryable, result.status_code) == (False, False, 401)
    assert result.error == "http-401"
    assert receiver.deliveries[0].verification_error == "no matching signature"


def test_server_error_is_retryable_and_body_is_not_kept(receiver: Receiver) -> None:
    receiver.status = 500
    receiver.reply_body = b"patient SYNTH-4711 score 23 crashed the handler"

    result = _deliver(receiver)

    assert (result.ok, result.retryable, result.status_code) == (False, True, 500)
    assert result.error == "http-500"
    assert result.retry_after is None
    assert "SYNTH-4711" not in repr(result)


def test_rate_limited_with_retry_after_seconds(receiver: Receiver) -> None:
    receiver.status = 429
    receiver.reply_headers = {"Retry-After": "7"}

    result = _deliver(receiver)

    assert (result.ok, result.retryable, result.status_code) == (False, True, 429)
    assert result.error == "http-429"
    assert result.retry_after == 7.0


def test_unavailable_with_retry_after_http_date(receiver: Receiver) -> None:
    receiver.status = 503
    when = datetime.now(UTC) + timedelta(seconds=120)
    receiver.reply_headers = {"Retry-After": format_datetime(when, usegmt=True)}

    result = _deliver(receiver)

    assert (result.retryable, result.status_code) == (True, 503)
    assert result.retry_after is not None and 100 <= result.retry_after <= 121


def test_request_timeout_status_is_retryable(receiver: Receiver) -> None:
    receiver.status = 408
    result = _deliver(receiver)
    assert (result.ok, result.retryable, result.error) == (False, True, "http-408")


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_other_client_errors_are_final(receiver: Receiver, status: int) -> None:
    receiver.status = status
    receiver.reply_headers = {"Retry-After": "7"}

    result = _deliver(receiver)

    assert (result.ok, result.retryable, result.status_code) == (False, False, status)
    assert result.error == f"http-{status}"
    assert result.retry_after is None


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.status = 307
    receiver.reply_headers = {"Location": receiver.url + "/elsewhere"}

    result = _deliver(receiver)

    assert (result.ok, result.retryable, result.error) == (False, False, "http-307")
    assert len(receiver.deliveries) == 1


def test_large_success_body_is_not_a_problem(receiver: Receiver) -> None:
    receiver.status = 200
    receiver.reply_body = b"x" * (1024 * 1024)
    assert _deliver(receiver).ok


def test_callers_pool_is_reused_and_left_open(receiver: Receiver) -> None:
    http = EgressHttp(LOOPBACK_ALLOWED)
    try:
        assert _deliver(receiver, http=http).ok
        assert _deliver(receiver, http=http).ok
        assert _deliver(receiver, http=http).ok  # the pool is still open for the next caller
    finally:
        http.close()
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 1


@pytest.fixture
def stalled_url() -> Iterator[tuple[str, threading.Event]]:
    """A server that accepts the connection, reads nothing and never answers."""
    accepted, release = threading.Event(), threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)

    def hold() -> None:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return
        with conn:
            accepted.set()
            release.wait(WAIT)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks", accepted
    finally:
        release.set()
        thread.join(WAIT)
        listener.close()


def test_receiver_that_never_answers_times_out(
    stalled_url: tuple[str, threading.Event],
) -> None:
    url, accepted = stalled_url
    started = time.monotonic()

    result = deliver_webhook(url, generate_webhook_secret(), "msg_0001", PAYLOAD, timeout=0.5)

    assert result == DeliveryResult(
        ok=False, retryable=True, status_code=None, error="timeout", retry_after=None
    )
    assert accepted.is_set()
    assert time.monotonic() - started < WAIT


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hooks"
        result = deliver_webhook(url, generate_webhook_secret(), "msg_0001", PAYLOAD)

    assert result == DeliveryResult(
        ok=False, retryable=True, status_code=None, error="connection", retry_after=None
    )


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hooks", "not a url"])
def test_unusable_url_is_final(url: str) -> None:
    result = deliver_webhook(url, generate_webhook_secret(), "msg_0001", PAYLOAD)
    assert (result.ok, result.retryable, result.error) == (False, False, "invalid-url")


@pytest.mark.parametrize(
    ("secret", "msg_id", "reason"),
    [
        ("", "msg_0001", "invalid-secret"),
        ("whsec_not*base64", "msg_0001", "invalid-secret"),
        ("whsec_" + "A" * 44, "msg.0001", "invalid-message-id"),
    ],
    ids=["empty-secret", "bad-secret", "dotted-id"],
)
def test_malformed_secret_or_id_is_a_final_failure_without_sending(
    receiver: Receiver, secret: str, msg_id: str, reason: str
) -> None:
    result = deliver_webhook(receiver.url, secret, msg_id, PAYLOAD)

    assert result == DeliveryResult(
        ok=False, retryable=False, status_code=None, error=reason, retry_after=None
    )
    assert receiver.deliveries == []
