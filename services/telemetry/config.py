"""Whether this process traces, and where to: read from the environment, no OpenTelemetry import.

The rule: tracing is on when an OTLP endpoint is configured, ``CARELOOP_OTEL_ENDPOINT`` first,
else the standard ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turns it off whatever is set.
``service.name`` is ``careloop-<role>`` unless ``OTEL_SERVICE_NAME`` names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from careloop.services.settings import Settings

TRACES_PATH = "/v1/traces"


class Role(StrEnum):
    """What a careloop process does: its ``service.name`` is ``careloop-<role>``."""

    api = "api"
    worker = "worker"
    beat = "beat"


@dataclass(frozen=True)
class TracingConfig:
    """Where this process sends its spans, and under which service name."""

    endpoint: str | None
    """The OTLP/HTTP traces URL; None: the exporter reads the standard OTEL_* variables."""
    service_name: str


def _traces_url(base: str) -> str:
    base = base.strip().rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def tracing_config(
    settings: Settings, role: Role, environ: Mapping[str, str] = os.environ
) -> TracingConfig | None:
    """The tracing configuration of a ``role`` process; None when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    name = environ.get("OTEL_SERVICE_NAME", "").strip() or f"careloop-{role.value}"
    if settings.otel_endpoint.strip():
        return TracingConfig(_traces_url(settings.otel_endpoint), name)
    standard = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if any(environ.get(variable, "").strip() for variable in standard):
        return TracingConfig(None, name)
    return None
