"""The public base URL ``careloop serve`` uses when ``CARELOOP_BASE_URL`` is not set.

Every link careloop hands out (``Location``, Bundle links, token ``iss``/``aud``, alert
``link``) is built from the base URL, so it must name the address the server really answers on.
The rule: ``CARELOOP_BASE_URL`` wins; otherwise ``http://HOST:PORT`` of the address ``serve``
binds; a wildcard bind (0.0.0.0, ::) has no address a caller can use, so careloop uses the
loopback address and warns. In production a guess is never right (TLS and a load balancer sit
in front), so there ``serve`` refuses to start without ``CARELOOP_BASE_URL``.
"""

from __future__ import annotations

import ipaddress

from careloop.services.settings import Environment, Settings

_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


class BaseUrlError(Exception):
    """``serve`` cannot derive a base URL it may use."""


def _url_host(host: str) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass  # a host name
    return host


def derive_base_url(settings: Settings, host: str, port: int) -> tuple[str, str | None]:
    """The base URL for a server bound to ``host:port``, and a warning to log, if any."""
    if "base_url" in settings.model_fields_set:
        return settings.base_url, None
    if settings.environment == Environment.production:
        raise BaseUrlError(
            "CARELOOP_BASE_URL must be set in production: it is the public URL of careloop "
            "(e.g. https://careloop.example.org) used in every link and token careloop issues"
        )
    if host in _WILDCARDS:
        url = f"http://127.0.0.1:{port}"
        return url, (
            f"binding {host or '*'}:{port} without CARELOOP_BASE_URL: links and tokens name "
            f"{url}, which works from this machine only; set CARELOOP_BASE_URL to the address "
            "callers use"
        )
    return f"http://{_url_host(host)}:{port}", None
