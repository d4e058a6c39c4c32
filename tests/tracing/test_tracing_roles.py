"""Each process traces under its role's service name; a prefork worker only in its pool
processes (Celery's ``worker_process_init``), not in the parent that forks them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.signals import worker_process_init
from sqlalchemy import Engine

from careloop.services import telemetry
from careloop.services.settings import Settings
from careloop.services.telemetry import Role
from careloop.workflows.telemetry import POOL_PROCESS_UID, start_tracing, trace_worker


@pytest.fixture
def traced(settings: Settings) -> Iterator[Settings]:
    """Settings with an endpoint (nothing listens: no span is made); tracing undone after."""
    yield settings.model_copy(update={"otel_endpoint": "http://127.0.0.1:9/"})
    tracing = telemetry.active()
    if tracing is not None:
        tracing.shutdown()


def _service_name() -> object:
    tracing = telemetry.active()
    assert tracing is not None
    return tracing.provider.resource.attributes["service.name"]


@pytest.mark.parametrize("role", list(Role))
def test_service_name_per_role(traced: Settings, role: Role) -> None:
    assert start_tracing(traced, role) is not None
    assert _service_name() == f"careloop-{role.value}"


def test_prefork_worker_traces_in_its_pool_processes(traced: Settings, engine: Engine) -> None:
    trace_worker(traced, "prefork", engine)
    assert telemetry.active() is None  # the parent forks the pool: no export thread to lose
    try:
        worker_process_init.send(sender=None)  # what Celery sends in each new pool process
        assert _service_name() == "careloop-worker"
    finally:
        worker_process_init.disconnect(dispatch_uid=POOL_PROCESS_UID)


def test_threads_worker_traces_at_once(traced: Settings, engine: Engine) -> None:
    trace_worker(traced, "threads", engine)
    assert _service_name() == "careloop-worker"


def test_nothing_without_an_endpoint(settings: Settings, engine: Engine) -> None:
    trace_worker(settings, "threads", engine)
    assert start_tracing(settings, Role.beat) is None
    assert telemetry.active() is None
