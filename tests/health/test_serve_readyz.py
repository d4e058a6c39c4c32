"""``careloop serve`` on the embedded default: ``/readyz`` watches the embedded worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support.processes import free_port, inherited_env, wait_healthy


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _readyz(origin: str) -> httpx.Response:
    return httpx.get(f"{origin}/readyz", timeout=10)


def test_readyz_turns_503_when_the_embedded_worker_dies(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = inherited_env() | {"CARELOOP_DATA_DIR": str(tmp_path), "CARELOOP_BASE_URL": origin}
    server = subprocess.Popen(
        [sys.executable, "-m", "careloop", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(origin, server)
        ready = _readyz(origin)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "schema": "ok", "broker": "ok"}
        [embedded] = _children(server.pid)  # serve's one child: the embedded worker
        os.kill(embedded, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (response := _readyz(origin)).status_code == 200:
            assert time.monotonic() < deadline, "readyz still 200 after the worker died"
            time.sleep(0.1)
        assert response.status_code == 503
        [issue] = response.json()["issue"]
        assert issue["diagnostics"] == "broker: the embedded worker is not running"
        assert httpx.get(f"{origin}/healthz", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
