"""Metrics of ``careloop worker`` and ``careloop beat``: multiprocess mode, and a port of their
own (``CARELOOP_METRICS_PORT`` on ``CARELOOP_METRICS_HOST``, default loopback).

The port serves the metrics every process of the run recorded (a prefork pool's children, an
embedded beat) with no token, as liveness probes need: it is protected by where it is bound
(loopback by default; elsewhere only behind a NetworkPolicy or firewall that lets Prometheus
alone in). It holds counters and histograms only, no PHI: the gauges read from the database are
the API's ``/metrics`` alone, so they are not scraped twice.
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from careloop.services.metrics.multiprocess import exposition_registry, process_started, start_run
from careloop.services.settings import Settings

log = logging.getLogger("careloop.metrics")


def serve_process_metrics(settings: Settings, kind: str, *, port: bool = True) -> None:
    """Record this process's metrics with the run's, and serve them on the metrics port (if
    ``port`` and one is set)."""
    start_run(settings.metrics_dir, settings.data_dir)
    process_started(kind)
    if port and settings.metrics_port is not None:
        start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=exposition_registry()
        )
        log.info(
            "metrics of this %s on %s:%d/metrics",
            kind,
            settings.metrics_host,
            settings.metrics_port,
        )
