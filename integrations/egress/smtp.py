"""SMTP connections through the same destination rules as HTTP, pinned to a checked address.

``smtplib`` resolves the host inside ``socket.create_connection``; these subclasses resolve it
through the `DestinationPolicy` instead and connect to a checked address, while ``_host`` (used
for the STARTTLS / implicit-TLS server name and certificate check) stays the configured name.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

from careloop.integrations.egress.destinations import DestinationPolicy, DestinationRefused


def check_smtp(policy: DestinationPolicy, host: str, port: int, starttls: bool, tls: bool) -> None:
    """Refuse an SMTP server the rules do not allow (production: TLS required, public host)."""
    if policy.require_https and not (starttls or tls):
        raise DestinationRefused(
            "tls-required", "SMTP needs STARTTLS or implicit TLS in production"
        )
    policy.check_name(host.lower().rstrip("."))
    policy.addresses_for(host.lower().rstrip("."), port)


def _pinned_socket(
    policy: DestinationPolicy, host: str, port: int, timeout: float, source: object
) -> socket.socket:
    source_address = source if isinstance(source, tuple) else None
    last: OSError | None = None
    for address in policy.addresses_for(host.lower().rstrip("."), port):
        try:
            return socket.create_connection((str(address), port), timeout, source_address)
        except OSError as exc:
            last = exc
    assert last is not None
    raise last


class PinnedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` that connects only to addresses ``policy`` allows."""

    def __init__(self, policy: DestinationPolicy, timeout: float) -> None:
        self._policy = policy
        super().__init__(timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _pinned_socket(self._policy, host, port, timeout, self.source_address)


class PinnedSMTPSSL(smtplib.SMTP_SSL):
    """``smtplib.SMTP_SSL`` (implicit TLS, port 465) that connects only to allowed addresses."""

    def __init__(self, policy: DestinationPolicy, timeout: float) -> None:
        self._policy = policy
        super().__init__(timeout=timeout, context=ssl.create_default_context())

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = _pinned_socket(self._policy, host, port, timeout, self.source_address)
        server_name: str = self._host  # type: ignore[attr-defined]  # set by connect()
        return self.context.wrap_socket(sock, server_hostname=server_name)


def open_smtp(policy: DestinationPolicy, tls: bool, timeout: float) -> smtplib.SMTP:
    """An unconnected SMTP client (implicit TLS when ``tls``) bound to ``policy``."""
    return PinnedSMTPSSL(policy, timeout) if tls else PinnedSMTP(policy, timeout)
