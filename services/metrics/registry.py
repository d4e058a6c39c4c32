"""Every careloop metric, defined once (names and labels agreed with the deploy files).

Labels never carry PHI or unbounded values: route templates, status codes, severities, channel
kinds, instruments, risk categories and levels, and connection ids only; anything else becomes
``other``. Gauges read from the database at scrape time are in
``careloop.services.metrics.collector``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)
"""careloop's metrics in a single process (multiprocess mode reads the shared files instead)."""

HTTP_REQUESTS = Counter(
    "careloop_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "careloop_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    registry=REGISTRY,
)
REPORTS_ACCEPTED = Counter(
    "careloop_reports_accepted",
    "Symptom reports stored (not retries), by instrument (phq-9, gad-7, mood, ...).",
    ["instrument"],
    registry=REGISTRY,
)
RISK_SIGNALS_ACCEPTED = Counter(
    "careloop_risk_signals_accepted",
    "Risk signals stored (not retries), by category (self-harm, crisis, ...) and level.",
    ["category", "level"],
    registry=REGISTRY,
)
ALERTS_OPENED = Counter(
    "careloop_alerts_opened",
    "Alerts opened, by severity.",
    ["severity"],
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "careloop_notifications",
    "Notification attempts by channel and outcome: sent, failed (each failed attempt, retried "
    "or final) or blocked (consent or destination policy).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
REPORT_TO_NOTIFICATION = Histogram(
    "careloop_report_to_notification_seconds",
    "From a reading's receipt to its notification's acceptance by the channel, by severity.",
    ["severity"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
    registry=REGISTRY,
)
EHR_PUSHES = Counter(
    "careloop_ehr_pushes",
    "Pushes into an EHR by connection id and outcome: written, refused (the EHR refused the "
    "write), failed (transient, retried) or blocked (consent or destination policy).",
    ["connection", "outcome"],
    registry=REGISTRY,
)
PROCESSES = Gauge(
    "careloop_processes",
    "careloop processes alive, by kind (api, worker, beat).",
    ["kind"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)

RECORDED = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    REPORTS_ACCEPTED,
    RISK_SIGNALS_ACCEPTED,
    ALERTS_OPENED,
    NOTIFICATIONS,
    REPORT_TO_NOTIFICATION,
    EHR_PUSHES,
    PROCESSES,
)
"""The metrics processes record (as opposed to the gauges read at scrape time)."""
