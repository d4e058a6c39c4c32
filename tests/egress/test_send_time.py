"""The rules hold again when connecting: real HTTP on loopback, DNS answered through the seam.

The resolver handed to the policy stands in for the OS resolver (it is the seam careloop's
transport resolves through); the receivers, sockets and HTTP are real.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from careloop.integrations.channels import deliver_webhook, generate_webhook_secret
from careloop.integrations.egress import (
    DestinationPolicy,
    DestinationRefused,
    Disclosure,
    EgressBlocked,
    EgressClient,
    EgressEvent,
    EgressHttp,
    Guard,
)
from careloop.integrations.egress.destinations import IPAddress
from careloop.integrations.ehr.smart import SmartError, discover

PUBLIC = ipaddress.ip_address("93.184.215.14")
LOOPBACK = ipaddress.ip_address("127.0.0.1")
WAIT = 5.0


@dataclass
class Server:
    """A loopback HTTP server recording each request's Host header and answering ``body``."""

    port: int = 0
    hosts: list[str] = field(default_factory=list)
    body: bytes = b"{}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep connections open, as real receivers do

        def _answer(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            if length:
                self.rfile.read(length)
            state.hosts.append(self.headers.get("host", ""))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        do_GET = do_POST = _answer  # noqa: N815 (http.server naming)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)


@dataclass
class Dns:
    """Answers per name, each lookup counted; ``then`` replaces an answer after the first."""

    answers: dict[str, list[IPAddress]]
    then: dict[str, list[IPAddress]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.lookups.append(host)
        if host in self.then and self.lookups.count(host) > 1:
            return self.then[host]
        if host not in self.answers:
            raise DestinationRefused("unresolvable", f"{host} could not be resolved")
        return self.answers[host]


@dataclass
class Ledger:
    """A Guard's consent answers and the audit events it received."""

    denied: set[str] = field(default_factory=set)
    events: list[EgressEvent] = field(default_factory=list)

    def guard(self) -> Guard:
        def consent(patient_id: str, purpose: str) -> str | None:
            return "consent-1" if patient_id in self.denied else None

        return Guard("tenant-1", "test", consent, self.events.append)


_OPEN: list[EgressHttp] = []


@pytest.fixture(autouse=True)
def _close_pools() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _client(policy: DestinationPolicy, ledger: Ledger, channel: str = "webhook") -> EgressClient:
    http = EgressHttp(policy)
    _OPEN.append(http)
    return EgressClient(http, ledger.guard(), channel)


def test_a_name_that_rebinds_to_loopback_is_refused_when_sending(server: Server) -> None:
    dns = Dns({"hooks.example.org": [PUBLIC]}, then={"hooks.example.org": [LOOPBACK]})
    policy = DestinationPolicy.create(production=False, allow_loopback=False, resolver=dns)
    url = f"http://hooks.example.org:{server.port}/hook"
    assert policy.check_url(url).addresses == (PUBLIC,)  # what registration saw
    ledger = Ledger()

    result = deliver_webhook(
        _client(policy, ledger),
        url,
        generate_webhook_secret(),
        "msg_1",
        {"alert": "a-1"},
        disclosure=Disclosure("patient-1", ("Task/t-1",)),
    )

    assert (result.ok, result.retryable, result.error) == (False, False, "destination-loopback")
    assert server.hosts == []  # nothing reached the internal address
    [event] = ledger.events
    assert (event.outcome, event.reason) == ("refused", "loopback")
    assert event.destination == f"webhook:hooks.example.org:{server.port}"


@pytest.mark.parametrize("internal", ["127.0.0.1", "10.0.0.8", "169.254.169.254", "::1"])
def test_every_internal_answer_is_refused_at_connect_time(server: Server, internal: str) -> None:
    dns = Dns({"hooks.example.org": [ipaddress.ip_address(internal)]})
    policy = DestinationPolicy.create(production=False, allow_loopback=False, resolver=dns)
    with pytest.raises(DestinationRefused):
        _client(policy, Ledger()).request("GET", f"http://hooks.example.org:{server.port}/")
    assert server.hosts == []


def test_the_connection_goes_to_the_checked_address_under_the_name(server: Server) -> None:
    # The name exists only in our resolver: had anything else resolved it, the request failed.
    dns = Dns({"receiver.careloop-test.example": [LOOPBACK]})
    policy = DestinationPolicy.create(production=False, allow="127.0.0.0/8", resolver=dns)
    client = _client(policy, Ledger())
    url = f"http://receiver.careloop-test.example:{server.port}/hook"

    assert client.request("POST", url, content=b"{}").status_code == 200
    assert client.request("POST", url, content=b"{}").status_code == 200

    assert server.hosts == [f"receiver.careloop-test.example:{server.port}"] * 2
    assert dns.lookups == ["receiver.careloop-test.example"]  # the kept connection was reused


def test_production_refuses_plain_http_before_connecting(server: Server) -> None:
    policy = DestinationPolicy.create(production=True, allow="127.0.0.1")
    ledger = Ledger()
    with pytest.raises(DestinationRefused) as refused:
        _client(policy, ledger).request("GET", f"http://127.0.0.1:{server.port}/")
    assert refused.value.reason == "https-required"
    assert server.hosts == []
    assert [e.outcome for e in ledger.events] == ["refused"]


def test_consent_is_checked_and_the_disclosure_audited(server: Server) -> None:
    ledger = Ledger(denied={"patient-2"})
    client = _client(DestinationPolicy.create(production=False), ledger)
    url = f"http://127.0.0.1:{server.port}/fhir/Patient"

    client.request("GET", url, params={"identifier": "s|v"}, disclosure=Disclosure("patient-1"))
    with pytest.raises(EgressBlocked):
        client.request("GET", url, disclosure=Disclosure("patient-2"))
    client.request("GET", url)  # carries no patient data: not a disclosure, not audited

    assert len(server.hosts) == 2
    assert [(e.outcome, e.disclosure and e.disclosure.patient_id) for e in ledger.events] == [
        ("success", "patient-1"),
        ("blocked", "patient-2"),
    ]
    assert all("identifier" not in e.destination for e in ledger.events)


@pytest.mark.parametrize(
    ("token_endpoint", "reason"),
    [
        ("http://169.254.169.254/latest/api/token", "link-local"),
        ("http://10.0.0.1/token", "private"),
        ("http://metadata.google.internal/token", "cloud metadata"),
        ("http://2130706433:1/token", None),  # loopback is allowed in test mode: passes
    ],
)
def test_a_smart_configuration_naming_an_internal_token_endpoint_is_refused(
    server: Server, token_endpoint: str, reason: str | None
) -> None:
    server.body = orjson.dumps({"token_endpoint": token_endpoint})
    client = _client(DestinationPolicy.create(production=False), Ledger(), "ehr")
    base = f"http://127.0.0.1:{server.port}/fhir"
    if reason is None:
        assert discover(client, base).token_endpoint == token_endpoint
        return
    with pytest.raises(SmartError) as refused:
        discover(client, base)
    assert not refused.value.transient
    assert "token endpoint refused" in str(refused.value)
    assert reason in str(refused.value)


def test_redirects_are_returned_not_followed(server: Server) -> None:
    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        client = _client(DestinationPolicy.create(production=False), Ledger())
        response = client.request("GET", f"http://127.0.0.1:{httpd.server_address[1]}/")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)
    assert response.status_code == 302
