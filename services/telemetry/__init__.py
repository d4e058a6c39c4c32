"""Tracing with OpenTelemetry: off unless an OTLP endpoint is configured, and free when off.

Nothing in this module imports OpenTelemetry. ``install`` (``services.telemetry.provider``)
does, and only a process that traces calls it; until then every function here is a check of
one module variable. Code on the request path asks for the current ``traceparent`` (to carry
it with outbox rows) and for the context to publish outbox work in.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from careloop.services.telemetry.config import Role, TracingConfig, tracing_config

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from careloop.services.telemetry.provider import Tracing

__all__ = [
    "Role",
    "TracingConfig",
    "active",
    "instrument_app",
    "instrument_engine",
    "publishing",
    "traceparent",
    "tracing_config",
]

_NOTHING: AbstractContextManager[None] = nullcontext()
_tracing: Tracing | None = None


def _use(tracing: Tracing | None) -> None:
    """Set (or clear) this process's tracing; called by ``provider.install`` and its shutdown."""
    global _tracing
    _tracing = tracing


def active() -> Tracing | None:
    """This process's tracing, if it traces."""
    return _tracing


def traceparent() -> str | None:
    """The W3C traceparent of the current span if it is recorded; None when tracing is off."""
    return None if _tracing is None else _tracing.traceparent()


def publishing(traceparent: str | None) -> AbstractContextManager[Any]:
    """The context to publish outbox work recorded under ``traceparent`` in.

    The work continues that trace; work recorded without one starts a trace of its own (never
    the trace of whichever relay happens to publish it). Nothing when tracing is off.
    """
    return _NOTHING if _tracing is None else _tracing.publishing(traceparent)


def instrument_app(app: Any) -> None:
    """Trace the FastAPI ``app``'s requests (route templates only), if this process traces."""
    if _tracing is not None:
        _tracing.instrument_app(app)


def instrument_engine(engine: Engine) -> None:
    """Trace ``engine``'s statements (never their parameters), if this process traces."""
    if _tracing is not None:
        _tracing.instrument_engine(engine)
