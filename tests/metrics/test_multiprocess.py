"""Multiprocess mode: processes of one run add up, runs clean up after themselves and after
killed processes, and ``careloop serve``'s embedded worker shows in the API's /metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from metrics_helpers import TOKEN, Scrape
from prometheus_client import CollectorRegistry, generate_latest
from support.clients import token_for
from support.processes import free_port, inherited_env, wait_healthy
from support.reports import phq9
from webhook_receiver import webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.metrics.multiprocess import ENV, RunMetrics

RECORD = """
import sys
from pathlib import Path
from careloop.services.metrics.multiprocess import process_started, start_run
from careloop.services.metrics.registry import REPORTS_ACCEPTED
run = start_run(None, Path(sys.argv[1]))
process_started("worker")
REPORTS_ACCEPTED.labels("phq-9").inc(int(sys.argv[2]))
print(run, flush=True)
if sys.argv[3] == "hang":
    sys.stdin.read()
"""


def _run(data_dir: Path, count: int, env: dict[str, str], hang: bool = False) -> str:
    args = [sys.executable, "-c", RECORD, str(data_dir), str(count), "hang" if hang else "exit"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.strip()


def _collect(directory: Path) -> Scrape:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunMetrics(directory))
    return Scrape(generate_latest(registry).decode())


def test_two_processes_counters_add_up(tmp_path: Path) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    env = inherited_env() | {ENV: str(shared)}
    assert _run(tmp_path, 3, env) == str(shared)  # an inherited directory is used as it is
    assert _run(tmp_path, 4, env) == str(shared)
    metrics = _collect(shared)
    assert metrics.value("careloop_reports_accepted_total", instrument="phq-9") == 7
    # both ended normally: neither counts as alive any more
    assert metrics.value("careloop_processes", kind="worker") == 0


def test_a_killed_process_stops_counting_as_alive(tmp_path: Path) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    env = inherited_env() | {ENV: str(shared)}
    args = [sys.executable, "-c", RECORD, str(tmp_path), "1", "hang"]
    with subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        try:
            assert process.stdout is not None and process.stdout.readline().strip()
            assert _collect(shared).value("careloop_processes", kind="worker") == 1
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    metrics = _collect(shared)
    assert metrics.value("careloop_processes", kind="worker") == 0
    assert metrics.value("careloop_reports_accepted_total", instrument="phq-9") == 1


def test_a_run_makes_its_own_directory_and_removes_stale_ones(tmp_path: Path) -> None:
    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())[:64]
    base = tmp_path / "metrics"
    stale = base / f"run-{host}-{_dead_pid()}"
    alive = base / f"run-{host}-{os.getpid()}"
    other_host = base / "run-elsewhere-1"
    for folder in (stale, alive, other_host):
        folder.mkdir(parents=True)
        (folder / "counter_1.db").write_bytes(b"")
    run = Path(_run(tmp_path, 1, inherited_env()))
    assert run.parent == base and run.name.startswith(f"run-{host}-")
    assert not stale.exists()  # its process is gone
    assert alive.exists() and other_host.exists()  # a live run, another host's run
    assert not run.exists()  # removed when its process ended


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def _wait_for(scrape: callable, condition: callable, timeout: float = 60.0) -> Scrape:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while True:
        last = scrape()
        if condition(last):
            return last
        assert time.monotonic() < deadline, last.text[-2000:]
        time.sleep(0.2)


def test_serve_shows_its_embedded_workers_metrics(tmp_path: Path) -> None:
    """`careloop serve` alone (embedded broker and worker): the worker's notification and
    latency appear in the API's /metrics, through the run's shared directory."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = inherited_env() | {
        "CARELOOP_DATA_DIR": str(tmp_path),
        "CARELOOP_BASE_URL": origin,
        "CARELOOP_METRICS_TOKEN": TOKEN,
    }
    cli = [sys.executable, "-m", "careloop"]
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with (
            webhook_receiver(generate_webhook_secret()) as receiver,
            httpx.Client(base_url=origin, timeout=10) as http,
        ):
            wait_healthy(origin, server)

            def scrape() -> Scrape:
                answer = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
                assert answer.status_code == 200
                return Scrape(answer.text)

            alive = _wait_for(scrape, lambda s: s.value("careloop_processes", kind="worker") == 1)
            assert alive.value("careloop_processes", kind="api") == 1
            runs = list((tmp_path / "metrics").iterdir())
            assert len(runs) == 1
            assert http.get("/metrics").status_code == 401
            for command in (
                ["notify", "add-webhook", receiver.url, "--secret", receiver.secret],
                ["clients", "create", "app", "--scope", "system/*.cruds"],
            ):
                done = subprocess.run([*cli, *command], env=env, check=True, capture_output=True)
            credentials = json.loads(done.stdout)
            token = token_for(http, credentials["client_id"], credentials["client_secret"])
            response = http.post(
                "/v1/symptom-reports",
                json=phq9("e2e", [0] * 8 + [1]),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 201
            receiver.wait_for(1, timeout=60)
            after = _wait_for(
                scrape,
                lambda s: (
                    s.value("careloop_notifications_total", channel="webhook", outcome="sent") == 1
                ),
            )
            assert after.value("careloop_reports_accepted_total", instrument="phq-9") == 1
            assert after.value("careloop_alerts_opened_total", severity="critical") == 1
            count = "careloop_report_to_notification_seconds_count"
            assert after.value(count, severity="critical") == 1
            assert after.value("careloop_metrics_source_up", source="broker") == 1
            assert after.has("careloop_queue_depth", queue="careloop.urgent")
    finally:
        server.terminate()
        server.wait(timeout=30)
    # uvicorn ends on SIGTERM by raising it again, past atexit: the next run on this host
    # removes the directory its process left
    _run(tmp_path, 1, inherited_env())
    assert list((tmp_path / "metrics").iterdir()) == []


def test_a_worker_serves_its_metrics_on_its_own_port(tmp_path: Path) -> None:
    port = free_port()
    env = inherited_env() | {
        "CARELOOP_DATA_DIR": str(tmp_path),
        "CARELOOP_METRICS_PORT": str(port),
        "CARELOOP_QUEUE": f"metrics-worker-{port}",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "careloop", "worker", "--concurrency", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.2)
        assert answer.status_code == 200
        assert Scrape(answer.text).value("careloop_processes", kind="worker") == 1
        assert "careloop_outbox_backlog" not in answer.text  # the API's gauges, scraped there
        # bound to 127.0.0.1 alone: another address (here, another of loopback's) is refused
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
