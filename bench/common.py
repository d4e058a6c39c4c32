"""Helpers shared by careloop's benchmarks: servers in subprocesses, a scratch PostgreSQL
database, careloop's API, worker and beat processes, an app client and its token, CPU accounting
from ``/proc``, the worker's task log, percentiles and times."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

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


def pg_sessions(db_url: str) -> int:
    """Sessions PostgreSQL has opened on ``db_url``'s database so far (``pg_stat_database``)."""
    name = db_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


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


def fmt_ms(value: float | None) -> str:
    """Milliseconds, one decimal below 100."""
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"


def iso(at: datetime) -> str:
    """An RFC 3339 time with milliseconds and an explicit offset."""
    return at.isoformat(timespec="milliseconds")


def raise_keyboard_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------
# careloop's processes (API, worker, beat) on a fresh database and a queue of their own


def careloop_cmd(*args: str) -> list[str]:
    """argv of a ``careloop`` command."""
    return [str(VENV_BIN / "careloop"), *args]


def run_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run a careloop command printing one JSON line; that JSON."""
    out = subprocess.run(
        careloop_cmd(*args),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(
            f"careloop {' '.join(args[:2])} failed ({out.returncode}):\n{out.stderr}"
        )
    data: dict[str, Any] = orjson.loads(lines[-1])
    return data


def delete_queue(broker_url: str, queue: str) -> None:
    """Remove a run's queue (and its exchange / binding keys) from the broker."""
    if broker_url.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(broker_url)
        try:
            keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
            if keys:
                client.delete(*keys)
            client.zrem("_kombu.binding_deadlines", queue)
        finally:
            client.close()
        return
    from kombu import connection as kombu_connection

    connection_class: Any = kombu_connection.Connection
    with connection_class(broker_url, connect_timeout=5) as conn:
        channel = conn.channel()
        with contextlib.suppress(Exception):
            channel.queue_delete(queue)
        with contextlib.suppress(Exception):
            channel.exchange_delete(queue)


@dataclass
class CareloopStack:
    """careloop's API, worker and beat processes."""

    api: Server
    worker: Server
    beat: Server

    def servers(self) -> dict[str, Server]:
        """By group name."""
        return {"api": self.api, "worker": self.worker, "beat": self.beat}


@contextlib.contextmanager
def careloop_stack(
    label: str,
    broker_url: str,
    logs: Path,
    api_workers: int = 2,
    worker_concurrency: int = 4,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[CareloopStack, dict[str, str], str]]:
    """A fresh database, ``careloop serve --workers N``, ``careloop worker --pool threads`` and
    ``careloop beat`` on ``broker_url`` with a queue of their own; (stack, env, psycopg URL).

    Everything is stopped, the queue deleted and the database dropped on exit (also on error).
    """
    queue = f"{label}-{secrets.token_hex(4)}"
    port = free_port()
    with fresh_database(f"careloop_{label}_") as db_url:
        env = {
            **os.environ,
            "CARELOOP_DATABASE_URL": db_url,
            "CARELOOP_BROKER_URL": broker_url,
            "CARELOOP_QUEUE": queue,
            "CARELOOP_DATA_DIR": str(logs / f"data-{label}"),
            "CARELOOP_BASE_URL": f"http://{HOST}:{port}",
            "CARELOOP_TOKEN_LIFETIME_SECONDS": "3600",
            # The load generator is one client: per-client rate limits would measure themselves.
            "CARELOOP_RATE_LIMIT_API_PER_CLIENT": "",
            "CARELOOP_RATE_LIMIT_TOKEN_PER_CLIENT": "",
            # Synthetic patients record no consent; the shipped policy keeps EHR sync off
            # without one, so the benchmarks' tenant permits it (as a health system would).
            "CARELOOP_CONSENT_DEFAULTS": "ehr-sync=permit",
            **(extra_env or {}),
        }
        serve = ("serve", "--host", HOST, "--port", str(port), "--workers", str(api_workers))
        api = Server(f"{label}-api", careloop_cmd(*serve), env, port, logs)
        worker = Server(
            f"{label}-worker",
            careloop_cmd(
                "worker",
                "--concurrency",
                str(worker_concurrency),
                "--pool",
                "threads",
                "--loglevel",
                "INFO",
            ),
            env,
            0,
            logs,
        )
        beat = Server(f"{label}-beat", careloop_cmd("beat"), env, 0, logs)
        stack = CareloopStack(api, worker, beat)
        try:
            api.start()  # migrates the new database before it listens
            api.wait_ready(90)
            worker.start()
            beat.start()
            worker.wait_log(r"\S+@\S+ ready\.", 60)
            beat.wait_log(r"beat: Starting", 60)
            yield stack, env, db_url.replace("postgresql+psycopg://", "postgresql://")
        except BaseException:
            for server in (api, worker, beat):
                if server.proc is not None:
                    print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            for server in (beat, worker, api):
                server.stop()
                if server.leftovers:
                    print(f"  !!!  {server.name} left {server.leftovers} processes; terminated")
            try:
                delete_queue(broker_url, queue)
            except Exception as exc:  # clean-up must not hide the real error
                print(f"  !!!  could not delete queue {queue}: {exc!r}", file=sys.stderr)


# --------------------------------------------------------------------------------------------
# CPU used by groups of processes between two snapshots

CpuSnapshot = tuple[float, dict[int, tuple[int, str, float]], tuple[int, int]]


def cpu_snapshot() -> CpuSnapshot:
    """(monotonic time, every process's CPU seconds, machine jiffies)."""
    return time.monotonic(), proc_stats(), host_jiffies()


def cpu_by_group(
    before: CpuSnapshot, after: CpuSnapshot, roots: dict[str, int]
) -> dict[str, float]:
    """Cores used between two snapshots by each group (a root pid and its descendants, first
    match wins), PostgreSQL, the broker, the rest of this process tree (``bench``), everything
    else (``other``) and the whole machine (``machine``)."""
    seconds = after[0] - before[0]
    if seconds <= 0:
        return {}
    owner: dict[int, str] = {}
    for name, root in roots.items():
        for pid in descendants(after[1], root):
            owner.setdefault(pid, name)
    mine = descendants(after[1], os.getpid())
    groups = dict.fromkeys([*roots, "postgres", "broker", "bench"], 0.0)
    for pid, (_, comm, cpu) in after[1].items():
        used = cpu - before[1].get(pid, (0, "", 0.0))[2]
        if pid in owner:
            groups[owner[pid]] += used
        elif pid in mine:
            groups["bench"] += used
        elif comm.startswith("postgres"):
            groups["postgres"] += used
        elif comm in ("redis-server", "beam.smp", "erl_child_setup"):
            groups["broker"] += used
    busy = after[2][0] - before[2][0]
    total = after[2][1] - before[2][1]
    result = {name: used / seconds for name, used in groups.items()}
    result["machine"] = (os.cpu_count() or 1) * busy / total if total else 0.0
    result["other"] = max(0.0, result["machine"] - sum(result[g] for g in groups))
    return result


# --------------------------------------------------------------------------------------------
# The worker's task log and the stages of a task's way (from marks in wall-clock seconds)

TASK_EVENT = re.compile(r"^Task (\S+)\[(outbox-\d+)\] (received|succeeded in ([0-9.e+-]+)s|retry)")
"""Celery's lines about one task, as the ``event`` of careloop's JSON log lines."""


@dataclass
class TaskLog:
    """When the worker received, started and finished each outbox task, and its retries."""

    received: dict[str, float] = field(default_factory=dict)
    """The first delivery of each task."""
    last_received: dict[str, float] = field(default_factory=dict)
    """The last delivery of each task (after retries)."""
    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    retries: Counter[str] = field(default_factory=Counter)
    runtimes: dict[str, list[float]] = field(default_factory=dict)
    """Milliseconds each successful run took, by task name."""

    @classmethod
    def parse(cls, path: Path) -> TaskLog:
        """Read the worker's INFO log (JSON lines, ``time`` in UTC)."""
        log = cls()
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                match = TASK_EVENT.match(str(record.get("event", "")))
                if not match or "time" not in record:
                    continue
                task, task_id, what, runtime = match.groups()
                at = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
                if what == "received":
                    log.received.setdefault(task_id, at)
                    log.last_received[task_id] = at
                elif what == "retry":
                    log.retries[task] += 1
                else:
                    log.finished.setdefault(task_id, at)
                    log.started.setdefault(task_id, at - float(runtime))
                    log.runtimes.setdefault(task, []).append(float(runtime) * 1000)
        return log


def stage_ms(marks: dict[str, float], start: str, end: str) -> float | None:
    """Milliseconds from mark ``start`` to mark ``end`` (None when either is unknown)."""
    if start in marks and end in marks:
        return (marks[end] - marks[start]) * 1000
    return None
