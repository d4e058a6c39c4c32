"""The one HTTP client careloop sends with: address rules, consent and audit on every request.

`EgressHttp` is the process's pool of pinned connections (the only ``httpx.Client`` in careloop,
tests/egress/test_no_bypass.py keeps it so). `EgressClient` is one unit of work's view of it: it
refuses a destination the `DestinationPolicy` does not allow (audited as ``refused``), checks
consent for a request carrying patient data (audited as ``blocked``), and audits what became of
every request carrying patient data (``success`` on 2xx, else ``failed``). Redirects are never
followed: a 3xx is returned as it is.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx

from careloop.integrations.egress.destinations import DestinationPolicy, DestinationRefused
from careloop.integrations.egress.gate import Disclosure, Guard, Outcome
from careloop.integrations.egress.transport import PinnedTransport

DEFAULT_TIMEOUT = 10.0


class EgressHttp:
    """Pooled outbound HTTP whose every connection goes to a checked address.

    Building one loads the CA bundle (~15 ms), so a process keeps one (`shared`).
    """

    def __init__(
        self, policy: DestinationPolicy, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.policy = policy
        self._client = httpx.Client(
            transport=PinnedTransport(policy, ssl_context=ssl_context),
            timeout=DEFAULT_TIMEOUT,
            follow_redirects=False,
            trust_env=False,  # an environment proxy would resolve names behind our back
        )

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None,
        data: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        timeout: float,
    ) -> Iterator[httpx.Response]:
        with self._client.stream(
            method,
            url,
            content=content,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
        ) as response:
            yield response

    def close(self) -> None:
        """Close every pooled connection."""
        self._client.close()


_shared: dict[DestinationPolicy, EgressHttp] = {}
_shared_lock = threading.Lock()


def shared(policy: DestinationPolicy) -> EgressHttp:
    """The process's `EgressHttp` for ``policy`` (one pool per distinct policy)."""
    with _shared_lock:
        http = _shared.get(policy)
        if http is None:
            http = _shared[policy] = EgressHttp(policy)
        return http


def destination_label(channel: str, url: str) -> str:
    """``channel:host[:port]`` for audit records and logs: no path, query or credentials."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return f"{channel}:invalid-url"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{channel}:{parsed.host}{port}"[:300]


class EgressClient:
    """Send HTTP requests out of careloop for one tenant's unit of work (see module doc)."""

    def __init__(
        self, http: EgressHttp, guard: Guard, channel: str, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._http = http
        self.guard = guard
        self.channel = channel
        self.timeout = timeout
        """Seconds per request unless the request names its own."""

    @property
    def policy(self) -> DestinationPolicy:
        """The destination rules every request obeys."""
        return self._http.policy

    def request(
        self,
        method: str,
        url: str,
        *,
        disclosure: Disclosure | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request and read its whole answer.

        Raises DestinationRefused, EgressBlocked, or httpx.TransportError.
        """
        with self.stream(
            method,
            url,
            disclosure=disclosure,
            content=content,
            data=data,
            params=params,
            headers=headers,
            timeout=timeout,
        ) as response:
            response.read()
            return response

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        disclosure: Disclosure | None = None,
        content: bytes | None = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """Send one request and yield the answer with its body unread (see `request`)."""
        label = destination_label(self.channel, url)
        try:
            self.policy.check_static(url)
        except DestinationRefused as exc:
            self.guard.record(label, "refused", disclosure, exc.reason)
            raise
        if disclosure is not None:
            self.guard.require_consent(disclosure, label)
        outcome: Outcome = "failed"
        refused = False
        reason: str | None = None
        try:
            with self._http.stream(
                method,
                url,
                content=content,
                data=data,
                params=params,
                headers=headers,
                timeout=self.timeout if timeout is None else timeout,
            ) as response:
                outcome = "success" if response.is_success else "failed"
                yield response
        except DestinationRefused as exc:
            outcome, refused, reason = "refused", True, exc.reason
            raise
        except httpx.TransportError as exc:
            reason = type(exc).__name__
            raise
        finally:
            if disclosure is not None or refused:
                self.guard.record(label, outcome, disclosure, reason)
