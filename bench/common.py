"""Helpers shared by careloop's benchmarks: servers in subprocesses, a scratch PostgreSQL
database, an app client and its token, CPU accounting from ``/proc``, percentiles."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = ROOT / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get("CARELOOP_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HOST = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# CPU accounting (from /proc: which processes used the machine's cores during a phase)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats() -> dict[int, tuple[int, str, float]]:
    """Every process: pid -> (parent pid, command name, CPU seconds used so far)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 of proc(5): ppid is field 4, utime 14, stime 15
        stats[int(entry.name)] = (
            int(fields[1]),
            comm,
            (int(fields[11]) + int(fields[12])) / CLK_TCK,
        )
    return stats


def descendants(stats: dict[int, tuple[int, str, float]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def host_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------------------------
# Servers


def _group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                raw = (entry / "stat").read_text()
                fields = raw[raw.rindex(")") + 2 :].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(int(entry.name))
    return members


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A server in a subprocess (its own session), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, logs: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leftovers = 0

    def start(self) -> None:
        """Start the server process."""
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float) -> None:
        """Poll ``GET /healthz`` until it answers 200, the process dies or ``timeout_s`` passes."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return
                if self.log_lines(r"^Traceback \(most recent call last\)"):
                    # uvicorn's supervisor restarts crashing workers forever: fail now
                    raise RuntimeError(f"{self.name} failed to start:\n{self.log_tail()}")
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children running ``spawn_main``)."""
        if self.proc is None:
            return []
        pids: list[int] = []
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            for pid in map(int, children.split()):
                with contextlib.suppress(OSError):
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"spawn_main" in cmdline:
                        pids.append(pid)
        return pids or [self.proc.pid]

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server (uvicorn stops its workers), SIGKILL its process group if stuck.

        Processes of the server's group still alive after it exited (a child it did not stop)
        are terminated too, and counted in ``leftovers``.
        """
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        left = _group_members(proc.pid)
        if left:
            self.leftovers = len(left)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while _group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def wait_log(self, pattern: str, timeout_s: float) -> None:
        """Wait for a log line matching ``pattern`` (a process without ``/healthz``)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log_lines(pattern):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready:\n"
                    + self.log_tail()
                )
            if self.log_lines(r"^Traceback \(most recent call last\)"):
                raise RuntimeError(f"{self.name} failed to start:\n{self.log_tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text[-lines:])

    def log_lines(self, pattern: str) -> list[str]:
        """Lines of the server's log matching the regular expression ``pattern``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.split("\n") if re.search(pattern, line)]


# --------------------------------------------------------------------------------------------
# Database


@contextlib.contextmanager
def fresh_database(prefix: str = "careloop_bench_") -> Iterator[str]:
    """A new, empty PostgreSQL database named ``prefix`` + random hex; its SQLAlchemy URL.

    Dropped (WITH FORCE) on exit.
    """
    name = f"{prefix}{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"dropped database {name}")


def pg_version() -> str:
    """The PostgreSQL server version."""
    with psycopg.connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


# --------------------------------------------------------------------------------------------
# careloop client set-up


def create_client(env: dict[str, str]) -> tuple[str, str]:
    """Register the ``bench`` app client; its client_id and client_secret."""
    out = subprocess.run(
        [str(VENV_BIN / "careloop"), "clients", "create", "bench", "--scope", "system/*.cruds"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"careloop clients create failed ({out.returncode}):\n{out.stderr}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"careloop clients create printed no JSON:\n{out.stdout}")
    data = orjson.loads(lines[-1])
    return str(data["client_id"]), str(data["client_secret"])


def fetch_token(base_url: str, client_id: str, secret: str) -> str:
    """A bearer token by the client_credentials grant."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    response = httpx.post(f"{base_url}/oauth/token", data=form, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(f"POST /oauth/token: {response.status_code} {response.text}")
    return str(response.json()["access_token"])


# --------------------------------------------------------------------------------------------
# Figures and signals


def percentile(sorted_values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of already sorted values; 0 for none."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def raise_keyboard_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
