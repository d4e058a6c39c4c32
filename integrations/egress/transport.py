"""An httpx transport whose every TCP connection goes to an address checked at that moment.

httpcore asks its network backend to ``connect_tcp(host, port)`` and then starts TLS with the
URL's host name as SNI and for certificate checks. The backend here resolves the host itself,
checks every address against the `DestinationPolicy` and connects to a checked address (an IP
literal, so the OS does not resolve again). The name is resolved once per connection and used
for that connection only, so DNS rebinding between check and connect cannot happen, while TLS
and the ``Host`` header still carry the name.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import httpx

from careloop.integrations.egress.destinations import DestinationPolicy, DestinationRefused

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the policy allows, tried in the resolver's order."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._policy.addresses_for(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None  # addresses_for never returns an empty tuple
        raise last

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        raise DestinationRefused("unix-socket", "careloop does not connect to unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` (its request and error mapping) over a `PinnedBackend` pool.

    httpx offers no public way to hand its pool a network backend, so the pool it builds is
    replaced by an equal one that has ours; tests/egress prove every connection passes it.
    """

    def __init__(
        self,
        policy: DestinationPolicy,
        limits: httpx.Limits = DEFAULT_LIMITS,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # ~15 ms: built once. SSL_CERT_FILE / SSL_CERT_DIR are honoured (a hospital's own CA).
        ssl_context = ssl_context or httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(policy),
        )
