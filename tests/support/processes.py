"""careloop's commands (serve, worker, beat) in processes of their own, configured like a test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from careloop.services.settings import Settings


def inherited_env() -> dict[str, str]:
    """This process's environment without any CARELOOP_* value (a child configures itself)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CARELOOP_")}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(origin: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Poll ``origin``/healthz until it answers 200 (serve migrates, then listens); bounded.

    Fails at once if ``process`` has ended.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{origin}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)


def careloop_env(settings: Settings, crash_at: str | None = None) -> dict[str, str]:
    """The environment of a careloop process with ``settings``; no inherited CARELOOP_* value."""
    env = inherited_env()
    env |= {
        "CARELOOP_DATABASE_URL": settings.resolved_database_url,
        "CARELOOP_BROKER_URL": settings.broker_url,
        "CARELOOP_QUEUE": settings.queue,
        "CARELOOP_DATA_DIR": str(settings.data_dir),
        "CARELOOP_ENVIRONMENT": "test",
        "CARELOOP_SECRET_KEY": settings.secret_key,
        "CARELOOP_BASE_URL": settings.base_url,
    }
    if crash_at:
        env["CARELOOP_CRASH_AT"] = crash_at
    return env


def start_careloop(
    settings: Settings, command: list[str], log: Path | None = None, crash_at: str | None = None
) -> subprocess.Popen[bytes]:
    """``careloop <command>`` in its own process, logging to ``log`` (discarded without one)."""
    args = [sys.executable, "-m", "careloop", *command]
    env = careloop_env(settings, crash_at)
    if log is None:
        return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and wait for it; kill it if it does not end in 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
