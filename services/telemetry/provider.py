"""Installing tracing in a process: the SDK, its scrubbing exporter, and the instrumentations.

Imported only by a process that traces (``install``): importing it loads the OpenTelemetry SDK.
Spans go through a ``BatchSpanProcessor`` (exported off the request thread) to the OTLP/HTTP
exporter behind the PHI scrubber (``services.telemetry.scrub``); sampling follows the standard
``OTEL_TRACES_SAMPLER`` (default: parent-based, always on), except that the roots named in
``quiet_roots`` (beat's frequent polls) are never sampled.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.sqlalchemy.version import __version__ as sqlalchemy_version
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Engine

from careloop import __version__
from careloop.services import telemetry
from careloop.services.telemetry.config import TracingConfig
from careloop.services.telemetry.sampling import QuietRoots
from careloop.services.telemetry.scrub import ScrubbingExporter

log = logging.getLogger("careloop.telemetry")

EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$,/assets/"
"""Probes, scrapes and static files: no trace (regular expressions on the URL)."""

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_METRICS = NoOpMeterProvider()  # metrics are Prometheus' job (services/metrics)


class Tracing:
    """This process's tracing: its provider, and what it instrumented (undone by ``shutdown``)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._undo: list[Callable[[], None]] = []
        self._engine_tracer = provider.get_tracer(
            "opentelemetry.instrumentation.sqlalchemy", sqlalchemy_version
        )
        self._connections = _NO_METRICS.get_meter("careloop").create_up_down_counter("unused")

    def traceparent(self) -> str | None:
        """The current span's W3C traceparent, if it is sampled (else None: nothing to carry)."""
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid or not span_context.trace_flags.sampled:
            return None
        return (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
            f"{int(span_context.trace_flags):02x}"
        )

    @contextmanager
    def publishing(self, traceparent: str | None) -> Iterator[None]:
        """Make ``traceparent`` (or no trace at all) the current context for the block."""
        carrier = {"traceparent": traceparent} if traceparent else {}
        token = context_api.attach(_PROPAGATOR.extract(carrier, context=Context()))
        try:
            yield
        finally:
            context_api.detach(token)

    def instrument_app(self, app: Any) -> None:
        """Trace ``app``'s requests: one server span each, named by method and route template."""
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            meter_provider=_NO_METRICS,
            excluded_urls=EXCLUDED_URLS,
            exclude_spans=["receive", "send"],  # a span per ASGI message is noise
        )

    def instrument_engine(self, engine: Engine) -> None:
        """Trace ``engine``'s statements (their text with placeholders; no parameters)."""
        if engine in self._engines:
            return
        self._engines.add(engine)
        EngineTracer(  # type: ignore[no-untyped-call]
            self._engine_tracer, engine, self._connections, enable_commenter=False
        )

    def on_shutdown(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` (an uninstrumentation) when this tracing shuts down."""
        self._undo.append(undo)

    def shutdown(self) -> None:
        """Export what is left and undo every instrumentation (tests; the SDK's atexit)."""
        for undo in reversed(self._undo):
            undo()
        EngineTracer.remove_all_event_listeners()  # type: ignore[no-untyped-call]
        self.provider.shutdown()
        telemetry._use(None)


def install(
    config: TracingConfig,
    exporter: SpanExporter | None = None,
    quiet_roots: Collection[str] = (),
) -> Tracing:
    """Start tracing this process as ``config`` says (once; later calls return the first).

    ``exporter`` replaces the OTLP exporter (tests: an in-memory one); it is scrubbed alike.
    """
    current = telemetry.active()
    if current is not None:
        return current
    resource = Resource.create({SERVICE_NAME: config.service_name, SERVICE_VERSION: __version__})
    provider = TracerProvider(resource=resource)
    provider.sampler = QuietRoots(provider.sampler, frozenset(quiet_roots))
    exporter = exporter or OTLPSpanExporter(endpoint=config.endpoint)
    provider.add_span_processor(BatchSpanProcessor(ScrubbingExporter(exporter)))
    # Handed to each instrumentation, never made global: no other library (FastAPI's own
    # telemetry among them) traces behind the scrubber's back, and a test can undo it all.
    tracing = Tracing(provider)
    httpx_instrumentor = HTTPXClientInstrumentor()
    httpx_instrumentor.instrument(tracer_provider=provider, meter_provider=_NO_METRICS)
    tracing.on_shutdown(httpx_instrumentor.uninstrument)
    telemetry._use(tracing)
    log.info("tracing on: service %s, OTLP/HTTP", config.service_name)
    return tracing
