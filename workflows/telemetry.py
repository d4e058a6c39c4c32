"""Tracing the workflows' processes: the API's relay, workers and beat (Celery's spans too).

``start_tracing`` is a no-op, importing nothing of OpenTelemetry, unless tracing is configured
(``services.telemetry.config``). A prefork worker's pool processes start theirs on Celery's
``worker_process_init`` (the SDK's export thread does not survive a fork); threads and solo
pools trace in the worker process itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from careloop.services import telemetry
from careloop.services.settings import Settings
from careloop.services.telemetry import Role, tracing_config
from careloop.workflows.task_names import TaskName

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

    from careloop.services.telemetry.provider import Tracing

QUIET_TASKS = (
    TaskName.OUTBOX_RELAY,
    TaskName.ALERTS_ESCALATE_DUE,
    TaskName.DB_ANALYZE,
    TaskName.OUTBOX_PRUNE,
)
"""Beat's frequent polls: they start no trace (what they publish is traced in its own)."""


POOL_PROCESS_UID = "careloop-tracing"
"""Names the ``worker_process_init`` receiver that starts tracing in a prefork pool process."""


def _quiet_roots() -> frozenset[str]:
    # The Celery instrumentation's span names: beat's publication and the worker's run.
    verbs = ("apply_async", "run")
    return frozenset(f"{verb}/{task.value}" for task in QUIET_TASKS for verb in verbs)


def start_tracing(
    settings: Settings, role: Role, exporter: SpanExporter | None = None
) -> Tracing | None:
    """Trace this process as ``role`` if tracing is configured (or ``exporter`` given)."""
    config = tracing_config(settings, role)
    if config is None and exporter is None:
        return None
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    from careloop.services.telemetry.provider import install

    if config is None:
        config = telemetry.TracingConfig(None, f"careloop-{role.value}")
    tracing = install(config, exporter, _quiet_roots())
    celery = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    if not celery.is_instrumented_by_opentelemetry:
        celery.instrument(tracer_provider=tracing.provider)
        tracing.on_shutdown(celery.uninstrument)
    return tracing


def trace_worker(settings: Settings, pool: str, engine: Engine) -> None:
    """Trace a ``careloop worker`` running ``pool`` on ``engine``: here, or in each pool process
    (prefork)."""
    if tracing_config(settings, Role.worker) is None:
        return

    def start(**_kwargs: object) -> None:
        start_tracing(settings, Role.worker)
        telemetry.instrument_engine(engine)

    if pool != "prefork":
        start()
        return
    from celery.signals import worker_process_init

    worker_process_init.connect(start, weak=False, dispatch_uid=POOL_PROCESS_UID)
