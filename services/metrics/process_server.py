"""Metrics of ``careloop worker`` and ``careloop beat``: multiprocess mode, and a port of their
own (``CARELOOP_METRICS_PORT`` on ``CARELOOP_METRICS_HOST``, default loopback).

The port serves the metrics every process of the run recorded (a prefork pool's children, an
embedded beat); the gauges read from the database are the API's ``/metrics`` only, so they are
not scraped twice. With ``CARELOOP_METRICS_TOKEN`` set, a scrape must bring it here too.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from careloop.services.metrics.multiprocess import (
    exposition_registry,
    process_started,
    start_run,
)
from careloop.services.settings import Environment, Settings

log = logging.getLogger("careloop.metrics")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """No access lines on stderr (careloop logs its own)."""


def guarded(app: WsgiApp, token: str) -> WsgiApp:
    """``app`` on ``/metrics`` only, behind the bearer ``token`` when one is set."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        scheme, _, presented = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
        if token and not (
            scheme.lower() == "bearer"
            and hmac.compare_digest(presented.strip().encode(), token.encode())
        ):
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"a metrics token is required\n"]
        return app(environ, start_response)

    return serve


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_process_metrics(settings: Settings, kind: str, *, port: bool = True) -> WSGIServer | None:
    """Record this process's metrics with the run's, and serve them on the metrics port (if
    ``port`` and one is set); the server, or None. Exits when the port would be open to other
    hosts without a token in production."""
    start_run(settings.metrics_dir, settings.data_dir)
    process_started(kind)
    if not port or settings.metrics_port is None:
        return None
    host = settings.metrics_host
    if (
        settings.environment == Environment.production
        and not settings.metrics_token
        and not _loopback(host)
    ):
        raise SystemExit(
            f"careloop: CARELOOP_METRICS_HOST={host} is reachable from other hosts: set "
            "CARELOOP_METRICS_TOKEN too (or bind 127.0.0.1)"
        )
    family = socket.getaddrinfo(host, settings.metrics_port)[0][0]
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    app = guarded(make_wsgi_app(exposition_registry()), settings.metrics_token)
    server: WSGIServer = make_server(
        host, settings.metrics_port, app, server_class=server_class, handler_class=_Quiet
    )
    threading.Thread(target=server.serve_forever, name="careloop-metrics", daemon=True).start()
    log.info("metrics of this %s on %s:%d/metrics", kind, host, settings.metrics_port)
    return server
