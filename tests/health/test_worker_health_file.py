"""``careloop worker --health-file``: what Kubernetes probes a worker by, on a real worker."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

from support.clients import BASE_URL
from support.processes import start_careloop, stop

from careloop.services.settings import Environment, Settings


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def test_the_health_file_lives_while_the_worker_consumes(tmp_path: Path) -> None:
    settings = Settings(
        environment=Environment.test,
        data_dir=tmp_path / "data",  # the embedded SQLite broker: a queue of this test's own
        secret_key="test-secret-" + "x" * 32,
        base_url=BASE_URL,
    )
    health = tmp_path / "run" / "worker.alive"
    log = tmp_path / "worker.log"
    command = ["worker", "--health-file", str(health), "--health-interval", "0.3"]
    worker = start_careloop(settings, command, log)
    try:
        _until(health.exists, 90, "the health file appears once the worker consumes")
        first = health.stat().st_mtime_ns
        _until(lambda: health.stat().st_mtime_ns > first, 10, "the file is touched again")
        worker.send_signal(signal.SIGTERM)  # a warm shutdown, as Kubernetes stops a pod
        assert worker.wait(timeout=60) == 0
        assert not health.exists()
    finally:
        stop(worker)
    assert "ready." in log.read_text()
