"""Under production rules, a pinned https connection still speaks TLS to the name.

A real TLS server on 127.0.0.1 holds a certificate for ``secure.careloop-test.example`` only;
the name exists only in the resolver seam. The request succeeds only if careloop connects to
the checked address while sending the name as SNI, verifying the certificate against the name,
and sending it as ``Host``.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from careloop.integrations.egress import (
    DestinationPolicy,
    DestinationRefused,
    EgressClient,
    EgressHttp,
    Guard,
)
from careloop.integrations.egress.destinations import IPAddress

NAME = "secure.careloop-test.example"
WAIT = 5.0


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]


@dataclass
class TlsServer:
    port: int
    ca_file: Path
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "careloop test CA")])
    ca = _certificate("careloop test CA", ca_key, ca_name, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(NAME, key, ca_name, ca_key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem")
    sni: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: sni.append(name)  # type: ignore[assignment]
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            hosts.append(self.headers.get("host", ""))
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield TlsServer(httpd.server_address[1], tmp_path / "ca.pem", sni, hosts)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(WAIT)


def _resolve(host: str, port: int) -> Sequence[IPAddress]:
    if host != NAME:
        raise DestinationRefused("unresolvable", f"{host} could not be resolved")
    return [ipaddress.ip_address("127.0.0.1")]


def _client(server: TlsServer, allow: str) -> tuple[EgressClient, EgressHttp]:
    policy = DestinationPolicy.create(production=True, allow=allow, resolver=_resolve)
    http = EgressHttp(policy, ssl_context=ssl.create_default_context(cafile=server.ca_file))
    guard = Guard("tenant-1", "test", lambda _p, _purpose: None, lambda _event: None)
    return EgressClient(http, guard, "webhook"), http


def test_tls_to_a_pinned_address_carries_the_name(tls_server: TlsServer) -> None:
    client, http = _client(tls_server, allow="127.0.0.0/8")
    try:
        response = client.request("GET", f"https://{NAME}:{tls_server.port}/hook")
    finally:
        http.close()
    assert (response.status_code, response.text) == (200, "ok")
    assert tls_server.sni == [NAME]
    assert tls_server.hosts == [f"{NAME}:{tls_server.port}"]


def test_production_refuses_the_same_server_when_not_allow_listed(tls_server: TlsServer) -> None:
    client, http = _client(tls_server, allow="")
    try:
        with pytest.raises(DestinationRefused) as refused:
            client.request("GET", f"https://{NAME}:{tls_server.port}/hook")
    finally:
        http.close()
    assert refused.value.reason == "loopback"
    assert tls_server.sni == []
