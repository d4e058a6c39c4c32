"""Soak benchmark: memory and backlog of careloop's processes under a steady load for minutes.

Runs careloop as real processes on a fresh PostgreSQL database and a broker queue of its own
(Redis by default, ``--broker rabbitmq``): the API (``careloop serve --workers 2``), a Celery
worker (``careloop worker --concurrency 4 --pool threads``) and the scheduler (``careloop
beat``). A load process drives an open-loop rate (``--rate`` reports/s, sent on schedule by up
to ``--clients`` concurrent asyncio httpx clients whatever the answers' speed) of distinct PHQ-9
reports for ``--minutes``:

* routine reports (total 1, item 9 = 0) for ``--patients`` synthetic patients: each is evaluated
  and opens no alert;
* one in ``--alert-every`` with item 9 = 1, each for a new patient: it opens a critical alert,
  which a webhook receiver in this process (loopback) is paged about;
* ``--search-rate`` FHIR requests per second: Observations of a patient, a Patient and an
  Observation by id, a Patient by identifier.

Every ``--interval`` seconds one row is printed: reports accepted so far, the RSS of each
careloop process by role (API supervisor, each API worker, the Celery worker and any child
process of it, beat), the broker's queue depth (careloop's queue and its ``.urgent`` queue: Redis
``LLEN``, RabbitMQ a passive ``queue.declare``; messages taken by the worker but not yet
acknowledged are not in it), the outbox backlog (rows not yet published to the broker), the
readings not yet evaluated (open ``reading.created`` outbox rows), and the CPU each role used in
the interval. At the end: per process the RSS at the first sample after ``--warmup`` against the
last, the backlog's trend over the second half, accepted reports against stored Observations,
and two verdicts (RSS flat, backlog steady). ``--tracemalloc FRAMES`` makes every careloop
process trace its Python allocations from the end of the warm-up, and prints per process the
stacks whose allocations were still alive once the load ended and the work drained (the
processes run several times slower meanwhile). Processes, database and queues are cleaned up at
the end, also on error, Ctrl-C or SIGTERM.

    .venv/bin/python bench/soak.py                   # 10 minutes at 25 reports/s on Redis
    .venv/bin/python bench/soak.py --quick           # 1 minute, a row every 5 s
    .venv/bin/python bench/soak.py --broker rabbitmq --rate 30 --minutes 20
    .venv/bin/python bench/soak.py --minutes 4 --rate 10 --tracemalloc 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.synchronize
import os
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import orjson
import psycopg
from common import (
    HOST,
    CareloopStack,
    CpuSnapshot,
    careloop_stack,
    cpu_by_group,
    cpu_snapshot,
    create_client,
    delete_queue,
    descendants,
    fetch_token,
    fmt_ms,
    iso,
    percentile,
    pg_version,
    proc_stats,
    raise_keyboard_interrupt,
    run_cli,
)

PATIENT_SYSTEM = "https://bench.careloop.example/patients"
REPORTS_PATH = "/v1/symptom-reports"
BROKERS = ("redis", "rabbitmq")
MIB = 1024 * 1024

# Shared counters of the load process (indexes into a shared array).
ACCEPTED, ALERTS, REFUSED, FAILED, FHIR_OK, FHIR_FAILED, LATE, UNSENT = range(8)
COUNTERS = 8
FHIR_KINDS = ("Observation search", "Patient read", "Observation read", "Patient search")


# --------------------------------------------------------------------------------------------
# Reports


def report_body(
    n: int, run: str, patients: int, alert_every: int, base: datetime
) -> dict[str, Any]:
    """Report ``n``, effective ``n`` ms before ``base`` (so every report is distinct).

    Every ``alert_every``-th is a PHQ-9 with item 9 = 1 for a new patient (a critical alert of its
    own); the others total 1 with item 9 = 0 (no rule fires) for patient ``n % patients``.
    """
    critical = alert_every > 0 and n % alert_every == alert_every - 1
    if critical:
        patient, answers = f"soak-{run}-alert-{n:07d}", [0] * 8 + [1]
    else:
        patient = f"soak-{run}-{n % patients:05d}"
        answers = [1 if i == n % 8 else 0 for i in range(8)] + [0]
    return {
        "patient": {"system": PATIENT_SYSTEM, "value": patient},
        "instrument": "phq-9",
        "answers": answers,
        "effective": iso(base - timedelta(milliseconds=n)),
    }


# --------------------------------------------------------------------------------------------
# The load process


@dataclass(frozen=True)
class LoadSpec:
    """What the load process sends."""

    api_url: str
    token: str
    rate: float
    clients: int
    seconds: float
    patients: int
    alert_every: int
    search_rate: float
    run: str
    base: str


async def _load(spec: LoadSpec, counters: Any) -> dict[str, Any]:
    base = datetime.fromisoformat(spec.base)
    headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
    url = spec.api_url + REPORTS_PATH
    tickets = itertools.count()
    post_ms: list[float] = []
    fhir_ms: list[float] = []
    status: Counter[str] = Counter()
    fhir_status: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    error_at: list[str] = []
    patients: list[str] = []
    observations: list[str] = []
    worst_late = 0.0
    start = time.monotonic()
    deadline = start + spec.seconds

    def remember(known: list[str], value: str) -> None:
        if len(known) < 2000:
            known.append(value)
        else:
            known[random.randrange(len(known))] = value

    async def reporter(http: httpx.AsyncClient) -> None:
        nonlocal worst_late
        while True:
            n = next(tickets)
            due = start + n / spec.rate
            if due >= deadline:
                return
            if time.monotonic() >= deadline:  # behind schedule at the end: not sent
                counters[UNSENT] += 1
                continue
            late = time.monotonic() - due
            if late > 0:
                worst_late = max(worst_late, late)
                if late > 1.0:
                    counters[LATE] += 1
            else:
                await asyncio.sleep(-late)
            body = report_body(n, spec.run, spec.patients, spec.alert_every, base)
            t0 = time.perf_counter()
            try:
                response = await http.post(url, content=orjson.dumps(body), headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                counters[FAILED] += 1
                if len(error_at) < 10:
                    error_at.append(f"{type(exc).__name__} at {time.monotonic() - start:.1f} s")
                continue
            post_ms.append((time.perf_counter() - t0) * 1000)
            status[str(response.status_code)] += 1
            if response.status_code != 201:
                counters[REFUSED] += 1
                continue
            counters[ACCEPTED] += 1
            if body["answers"][8]:
                counters[ALERTS] += 1
            data = response.json()
            remember(patients, str(data["patient"]).removeprefix("Patient/"))
            for ref in data.get("resources", []):
                if str(ref).startswith("Observation/"):
                    remember(observations, str(ref).removeprefix("Observation/"))

    async def searcher(http: httpx.AsyncClient) -> None:
        if spec.search_rate <= 0:
            return
        for k in itertools.count():
            due = start + k / spec.search_rate
            if due >= deadline or time.monotonic() >= deadline:
                return
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if not patients or not observations:
                continue
            kind = k % 4
            if kind == 0:
                path = "/fhir/Observation"
                params = {"patient": f"Patient/{random.choice(patients)}", "_count": "10"}
                params["_sort"] = "-date"
            elif kind == 1:
                path, params = f"/fhir/Patient/{random.choice(patients)}", {}
            elif kind == 2:
                path, params = f"/fhir/Observation/{random.choice(observations)}", {}
            else:
                value = f"soak-{spec.run}-{random.randrange(spec.patients):05d}"
                path, params = "/fhir/Patient", {"identifier": f"{PATIENT_SYSTEM}|{value}"}
            t0 = time.perf_counter()
            try:
                response = await http.get(
                    spec.api_url + path,
                    params=params,
                    headers={"Authorization": headers["Authorization"]},
                )
            except httpx.HTTPError as exc:
                errors[f"fhir {type(exc).__name__}"] += 1
                counters[FHIR_FAILED] += 1
                continue
            fhir_ms.append((time.perf_counter() - t0) * 1000)
            fhir_status[f"{FHIR_KINDS[kind]} {response.status_code}"] += 1
            counters[FHIR_OK if response.status_code == 200 else FHIR_FAILED] += 1

    # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them: a request
    # sent on a connection the server is closing fails with a ReadError, which is the client's.
    limits = httpx.Limits(
        max_connections=spec.clients + 2,
        max_keepalive_connections=spec.clients + 2,
        keepalive_expiry=2.0,
    )
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        await asyncio.gather(searcher(http), *(reporter(http) for _ in range(spec.clients)))
    return {
        "post_ms": sorted(post_ms),
        "fhir_ms": sorted(fhir_ms),
        "status": dict(status),
        "fhir_status": dict(fhir_status),
        "errors": dict(errors),
        "error_at": error_at,
        "worst_late_s": worst_late,
        "seconds": time.monotonic() - start,
        "cpu_s": time.process_time(),
    }


def load_main(spec: LoadSpec, counters: Any, out: multiprocessing.Queue[dict[str, Any]]) -> None:
    """Entry point of the load process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    out.put(asyncio.run(_load(spec, counters)))


class Load:
    """The load process and its live counters."""

    def __init__(self, spec: LoadSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.counters: Any = ctx.Array("q", COUNTERS)
        self._out: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
        self.proc = ctx.Process(
            target=load_main, args=(spec, self.counters, self._out), name="soak-load", daemon=True
        )
        self.proc.start()
        self.timeout_s = spec.seconds + 120
        self._result: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        """The load process's pid."""
        return self.proc.pid or 0

    def count(self, index: int) -> int:
        """One live counter."""
        return int(self.counters[index])

    def running(self) -> bool:
        """Whether the load still runs; takes its figures once it is done (the process cannot
        exit before they are read from the pipe)."""
        if self._result is None:
            with contextlib.suppress(Empty):
                self._result = self._out.get_nowait()
        return self._result is None and self.proc.is_alive()

    def result(self) -> dict[str, Any]:
        """Wait for the load to finish; its figures."""
        if self._result is None:
            self._result = self._out.get(timeout=self.timeout_s)
        self.proc.join(10)
        return self._result

    def kill(self) -> None:
        """Make sure the process is gone."""
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


# --------------------------------------------------------------------------------------------
# The webhook receiver (counts the pages; alert_latency.py verifies them)


class Receiver:
    """A threaded HTTP server on loopback answering 200 to every POST."""

    def __init__(self) -> None:
        self.received = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver.received += 1
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-receiver", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------------------------
# Sampling: processes, broker, database


def proc_memory(pid: int) -> tuple[float, float, int] | None:
    """(RSS MiB, anonymous RSS MiB, threads) of a live process, from ``/proc/<pid>/status``."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        values[key] = value.strip()
    if "VmRSS" not in values:  # a zombie
        return None
    kib = int(values["VmRSS"].split()[0])
    anon = int(values.get("RssAnon", "0 kB").split()[0])
    return kib / 1024, anon / 1024, int(values.get("Threads", "1"))


class Roles:
    """Names careloop's processes by role, stably across samples (``api-w1`` stays ``api-w1``;
    a worker uvicorn restarts gets the next number, and is noted)."""

    def __init__(self, stack: CareloopStack) -> None:
        self.stack = stack
        self.names: dict[int, str] = {}
        self._api_workers = 0
        self._children: Counter[str] = Counter()
        self.notes: list[str] = []

    def current(self) -> dict[str, int]:
        """Role -> pid of every careloop process alive now."""
        stats = proc_stats()
        found: dict[str, int] = {}
        api = self.stack.api.proc
        if api is not None:
            found["api"] = api.pid
            workers = set(self.stack.api.worker_pids()) - {api.pid}
            for pid in sorted(workers):
                if pid not in self.names:
                    self._api_workers += 1
                    self.names[pid] = f"api-w{self._api_workers}"
                    if self._api_workers > self.stack_api_workers:
                        self.notes.append(f"new API worker {self.names[pid]} (pid {pid})")
                found[self.names[pid]] = pid
            for pid in sorted(descendants(stats, api.pid) - workers - {api.pid}):
                found[self._child("api", pid)] = pid
        for group, server in (("worker", self.stack.worker), ("beat", self.stack.beat)):
            if server.proc is None:
                continue
            found[group] = server.proc.pid
            for pid in sorted(descendants(stats, server.proc.pid) - {server.proc.pid}):
                found[self._child(group, pid)] = pid
        return found

    @property
    def stack_api_workers(self) -> int:
        """API workers asked for."""
        argv = self.stack.api.argv
        return int(argv[argv.index("--workers") + 1]) if "--workers" in argv else 1

    def _child(self, group: str, pid: int) -> str:
        if pid not in self.names:
            with contextlib.suppress(OSError):
                if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    # multiprocessing's resource tracker (uvicorn's workers are spawned)
                    self.names[pid] = f"{group}-rt"
                    return self.names[pid]
            self._children[group] += 1
            self.names[pid] = f"{group}-c{self._children[group]}"
        return self.names[pid]


class BrokerDepth:
    """Messages waiting in careloop's queues (its queue and ``<queue>.urgent``)."""

    def __init__(self, broker_url: str, queue: str) -> None:
        self.broker_url = broker_url
        self.queues = (queue, f"{queue}.urgent")
        self._redis: Any = None
        self._amqp: Any = None
        self._channel: Any = None

    def depths(self) -> tuple[int | None, int | None]:
        """(routine queue, urgent queue); None when the broker could not say."""
        try:
            if self.broker_url.startswith("redis://"):
                return self._redis_depths()
            return self._amqp_depth(self.queues[0]), self._amqp_depth(self.queues[1])
        except Exception:  # a sample must not end the soak
            return None, None

    def _redis_depths(self) -> tuple[int | None, int | None]:
        import redis

        if self._redis is None:
            self._redis = redis.Redis.from_url(self.broker_url)
        pipe = self._redis.pipeline()
        # kombu keeps priority 0 under the queue's name and other steps in suffixed lists.
        suffixes = ["", *(f"\x06\x16{step}" for step in (3, 6, 9))]
        for name in self.queues:
            for suffix in suffixes:
                pipe.llen(name + suffix)
        counts = pipe.execute()
        step = len(suffixes)
        return sum(counts[:step]), sum(counts[step:])

    def _amqp_depth(self, queue: str) -> int | None:
        from kombu import connection as kombu_connection

        if self._amqp is None:
            connection_class: Any = kombu_connection.Connection
            self._amqp = connection_class(self.broker_url, connect_timeout=5)
        if self._channel is None:
            self._channel = self._amqp.channel()
        try:
            ok = self._channel.queue_declare(queue=queue, passive=True)
        except Exception:
            self._channel = None  # a failed passive declare closes the channel
            return None
        return int(ok.message_count)

    def close(self) -> None:
        """Drop the connections."""
        with contextlib.suppress(Exception):
            if self._redis is not None:
                self._redis.close()
        with contextlib.suppress(Exception):
            if self._amqp is not None:
                self._amqp.release()


def outbox_backlog(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """(outbox rows not yet published, readings not yet evaluated, open rows of any task).

    A reading is evaluated when its ``reading.created`` row is completed (in the transaction of
    its ``processed_reading`` row); the partial index of open rows serves the count.
    """
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE dispatched_at IS NULL), "
        "count(*) FILTER (WHERE task = 'reading.created'), count(*) "
        "FROM outbox_message WHERE completed_at IS NULL"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


@dataclass
class Sample:
    """One row."""

    elapsed: float
    accepted: int
    rate: float
    """Reports accepted per second since the previous sample."""
    rss: dict[str, float]
    anon: dict[str, float]
    threads: dict[str, int]
    pids: dict[str, int]
    queue: int | None
    urgent: int | None
    outbox: int
    unevaluated: int
    open_rows: int
    cpu: dict[str, float]

    @property
    def backlog(self) -> int:
        """Messages waiting in the broker plus outbox rows waiting for the relay."""
        return (self.queue or 0) + (self.urgent or 0) + self.outbox


@dataclass
class Sampler:
    """Takes a ``Sample`` every interval."""

    roles: Roles
    depth: BrokerDepth
    conn: psycopg.Connection[Any]
    load: Load
    started: float
    samples: list[Sample] = field(default_factory=list)
    _cpu: CpuSnapshot | None = None
    _accepted: int = 0
    _at: float = 0.0

    def begin(self) -> None:
        """The CPU baseline of the first interval."""
        self._cpu = cpu_snapshot()
        self._at = time.monotonic()

    def take(self) -> Sample:
        """Sample now."""
        pids = self.roles.current()
        rss: dict[str, float] = {}
        anon: dict[str, float] = {}
        threads: dict[str, int] = {}
        for role, pid in pids.items():
            memory = proc_memory(pid)
            if memory is not None:
                rss[role], anon[role], threads[role] = memory
        queue, urgent = self.depth.depths()
        outbox, unevaluated, open_rows = outbox_backlog(self.conn)
        now_cpu = cpu_snapshot()
        roots: dict[str, int] = {g: pids[g] for g in ("api", "worker", "beat") if g in pids}
        roots["load"] = self.load.pid
        cpu = cpu_by_group(self._cpu, now_cpu, roots) if self._cpu is not None else {}
        accepted = self.load.count(ACCEPTED)
        now = time.monotonic()
        rate = (accepted - self._accepted) / (now - self._at) if now > self._at else 0.0
        self._cpu, self._accepted, self._at = now_cpu, accepted, now
        sample = Sample(
            now - self.started,
            accepted,
            rate,
            rss,
            anon,
            threads,
            {r: p for r, p in pids.items() if r in rss},
            queue,
            urgent,
            outbox,
            unevaluated,
            open_rows,
            cpu,
        )
        self.samples.append(sample)
        return sample


# --------------------------------------------------------------------------------------------
# Printing rows

CPU_GROUPS = ("api", "worker", "beat", "postgres", "broker", "load", "machine")
CPU_LABELS = ("api", "wrk", "beat", "pg", "brk", "load", "all")


def _opt(value: int | None) -> str:
    return "?" if value is None else str(value)


def print_header(roles: list[str]) -> None:
    """The rows' column names."""
    rss = "".join(f"{r:>8}" for r in roles)
    cpu = "".join(f"{c:>6}" for c in CPU_LABELS)
    print(
        f"\n{'t s':>6}{'accepted':>9}{'rep/s':>7} | RSS MiB{rss} | {'queue':>6}{'urgent':>7}"
        f"{'outbox':>7}{'uneval':>7} | CPU cores{cpu}"
    )


def print_row(sample: Sample, roles: list[str]) -> None:
    """One sample."""
    rss = "".join(f"{sample.rss[r]:>8.1f}" if r in sample.rss else f"{'-':>8}" for r in roles)
    cpu = "".join(f"{sample.cpu.get(g, 0.0):>6.2f}" for g in CPU_GROUPS)
    print(
        f"{sample.elapsed:>6.0f}{sample.accepted:>9}{sample.rate:>7.1f} | RSS    {rss} | "
        f"{_opt(sample.queue):>6}{_opt(sample.urgent):>7}{sample.outbox:>7}"
        f"{sample.unevaluated:>7} |          {cpu}",
        flush=True,
    )


# --------------------------------------------------------------------------------------------
# tracemalloc (optional): where Python memory grew in each process between two marks

SITECUSTOMIZE = """
# Written by bench/soak.py --tracemalloc: on mark file "first" start tracing allocations (from
# the start, imports would take 15 times longer), on "last" dump what is still allocated.
import os, threading, time, tracemalloc

_DIR = os.environ.get("CARELOOP_SOAK_TRACEMALLOC_DIR")
if _DIR:

    def _watch() -> None:
        for name in ("first", "last"):
            while not os.path.exists(os.path.join(_DIR, name)):
                time.sleep(1)
            if name == "first":
                tracemalloc.start(int(os.environ.get("CARELOOP_SOAK_TRACEMALLOC_FRAMES", "6")))
            path = os.path.join(_DIR, f"{os.getpid()}-{name}.snap")
            tracemalloc.take_snapshot().dump(path + ".tmp")
            os.replace(path + ".tmp", path)

    threading.Thread(target=_watch, name="soak-tracemalloc", daemon=True).start()
"""


def tracemalloc_env(directory: Path, frames: int) -> dict[str, str]:
    """Settings making every careloop process trace its allocations (``SITECUSTOMIZE``)."""
    site = directory / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.environ.get("PYTHONPATH", "")
    return {
        "PYTHONPATH": f"{site}{os.pathsep}{path}" if path else str(site),
        "CARELOOP_SOAK_TRACEMALLOC_DIR": str(directory),
        "CARELOOP_SOAK_TRACEMALLOC_FRAMES": str(frames),
    }


def tracemalloc_mark(directory: Path, name: str) -> None:
    """Ask every traced process for a snapshot named ``name``."""
    (directory / name).touch()


def print_tracemalloc(directory: Path, pids: dict[str, int], top: int = 8) -> None:
    """Per process: traced memory at both marks and the lines whose allocations grew most."""
    import tracemalloc

    deadline = time.monotonic() + 60
    ignore = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>"),
    )
    print(
        "\ntracemalloc: Python allocations made after warm-up and still alive once the load had "
        "ended and the work drained, by the stack that made them"
    )
    for role, pid in pids.items():
        paths = [directory / f"{pid}-{name}.snap" for name in ("first", "last")]
        while not all(p.exists() for p in paths) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not all(p.exists() for p in paths):
            print(f"  {role}: no snapshots")
            continue
        first, last = (tracemalloc.Snapshot.load(str(p)).filter_traces(ignore) for p in paths)
        size = [sum(t.size for t in snap.traces) / MIB for snap in (first, last)]
        print(f"  {role} (pid {pid}): {size[1] - size[0]:.1f} MiB still allocated")
        for stat in last.compare_to(first, "traceback")[:top]:
            if stat.size_diff <= 0:
                break
            frames = " <- ".join(
                f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback[-4:])
            )
            print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {frames}")


# --------------------------------------------------------------------------------------------
# Summary


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0 for fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


@dataclass(frozen=True)
class RssVerdict:
    """One process's memory over the soak."""

    role: str
    first: float
    last: float
    peak: float
    per_min: float
    """MiB per minute over the second half (least squares)."""
    anon_growth: float
    threads: tuple[int, int]

    @property
    def growth(self) -> float:
        """MiB from the first sample after warm-up to the last."""
        return self.last - self.first

    @property
    def growth_pct(self) -> float:
        """The growth in % of the first sample after warm-up."""
        return 100 * self.growth / self.first if self.first else 0.0


def rss_verdicts(samples: list[Sample], warmup_s: float) -> list[RssVerdict]:
    """Each process seen after warm-up: its RSS then, at the end, and its trend."""
    after = [s for s in samples if s.elapsed >= warmup_s] or samples[-1:]
    end = samples[-1].elapsed
    half = samples[0].elapsed + (end - samples[0].elapsed) / 2
    roles = list(dict.fromkeys(r for s in after for r in s.rss))
    verdicts = []
    for role in roles:
        mine = [s for s in after if role in s.rss]
        if not mine:
            continue
        second = [(s.elapsed / 60, s.rss[role]) for s in mine if s.elapsed >= half]
        verdicts.append(
            RssVerdict(
                role,
                mine[0].rss[role],
                mine[-1].rss[role],
                max(s.rss[role] for s in mine),
                slope(second),
                mine[-1].anon[role] - mine[0].anon[role],
                (mine[0].threads[role], mine[-1].threads[role]),
            )
        )
    return verdicts


def backlog_trend(samples: list[Sample], values: list[float]) -> tuple[float, float]:
    """(per minute, growth over the span) of ``values`` over the second half of the samples."""
    end = samples[-1].elapsed
    half = samples[0].elapsed + (end - samples[0].elapsed) / 2
    points = [
        (s.elapsed / 60, v) for s, v in zip(samples, values, strict=True) if s.elapsed >= half
    ]
    per_min = slope(points)
    span = (points[-1][0] - points[0][0]) if len(points) > 1 else 0.0
    return per_min, per_min * span


def fhir_total(base_url: str, token: str, rtype: str) -> int:
    """The ``total`` of ``GET /fhir/{rtype}?_count=0``."""
    response = httpx.get(
        f"{base_url}/fhir/{rtype}",
        params={"_count": "0"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"GET /fhir/{rtype}?_count=0: {response.status_code}")
    return int(response.json()["total"])


def db_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Evaluated readings, alerts, delivered pages and dead tasks in the database."""
    counts = {}
    for name, sql in (
        ("evaluated", "SELECT count(*) FROM processed_reading"),
        ("alerts", "SELECT count(*) FROM alert"),
        ("dead", "SELECT count(*) FROM outbox_message WHERE outcome = 'dead'"),
    ):
        row = conn.execute(sql).fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def wait_drained(sampler: Sampler, timeout_s: float) -> float | None:
    """Seconds until nothing waits (broker queues, outbox, evaluations); None on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        queue, urgent = sampler.depth.depths()
        outbox, unevaluated, _ = outbox_backlog(sampler.conn)
        if not (queue or urgent or outbox or unevaluated) and queue is not None:
            return time.monotonic() - start
        time.sleep(0.5)
    return None


def print_summary(
    args: argparse.Namespace,
    samples: list[Sample],
    load: dict[str, Any],
    checks: dict[str, Any],
) -> bool:
    """The figures and verdicts; whether every verdict is good."""
    warmup = args.warmup
    print(
        f"\nmemory per process (RSS, MiB): first sample at or after {warmup:g} s of warm-up vs "
        "the last sample; trend: least-squares MiB/minute over the second half"
    )
    print(
        f"  {'process':<10}{'after warm-up':>14}{'last':>8}{'growth':>9}{'%':>7}{'peak':>8}"
        f"{'MiB/min':>9}{'anon growth':>13}{'threads':>10}"
    )
    verdicts = rss_verdicts(samples, warmup)
    flat = True
    for v in verdicts:
        grows = v.growth >= args.rss_mib or v.growth_pct >= args.rss_pct
        flat = flat and not grows
        print(
            f"  {v.role:<10}{v.first:>14.1f}{v.last:>8.1f}{v.growth:>+9.1f}{v.growth_pct:>+7.1f}"
            f"{v.peak:>8.1f}{v.per_min:>+9.2f}{v.anon_growth:>+13.1f}"
            f"{f'{v.threads[0]}->{v.threads[1]}':>10}" + ("   <- grows" if grows else "")
        )

    backlog = [float(s.backlog) for s in samples]
    unevaluated = [float(s.unevaluated) for s in samples]
    b_min, b_growth = backlog_trend(samples, backlog)
    u_min, u_growth = backlog_trend(samples, unevaluated)
    limit = max(args.backlog_items, 2 * args.rate)
    growing = b_growth > limit or u_growth > limit
    depths = [(s.queue or 0) + (s.urgent or 0) for s in samples]
    extra = max(d - s.open_rows for d, s in zip(depths, samples, strict=True))
    print(
        f"\nbacklog: broker queues max {max(depths)} (urgent max "
        f"{max((s.urgent or 0) for s in samples)}), outbox max {max(s.outbox for s in samples)}, "
        f"readings not yet evaluated max {max(s.unevaluated for s in samples)}; second half: "
        f"queues + outbox {b_min:+.1f}/min ({b_growth:+.0f} over the half), not evaluated "
        f"{u_min:+.1f}/min ({u_growth:+.0f}); drained {checks['drain']}"
    )
    if extra > 0:
        print(
            f"  the broker held up to {extra} more messages than open outbox rows: the relay "
            "published again work whose lease ran out while it waited in the queue"
        )

    seconds = load["seconds"]
    status = load["status"]
    accepted = int(status.get("201", 0))
    scheduled = round(args.rate * args.minutes * 60)
    post = load["post_ms"]
    fhir = load["fhir_ms"]
    print(
        f"\nload: offered {args.rate:g} reports/s for {seconds:.0f} s ({scheduled}, "
        f"{checks['unsent']} not sent: behind schedule at the end); accepted "
        f"{accepted} ({accepted / seconds:.1f}/s), other answers "
        f"{ {k: v for k, v in status.items() if k != '201'} or 'none' }, errors "
        f"{load['errors'] or 'none'}; POST p50 {fmt_ms(percentile(post, 50))} ms, p99 "
        f"{fmt_ms(percentile(post, 99))} ms, max {fmt_ms(post[-1] if post else None)} ms; "
        f"sent up to {load['worst_late_s']:.2f} s late ({checks['late']} over 1 s); FHIR "
        f"reads/searches "
        f"{dict(sorted(load['fhir_status'].items()))}, p50 {fmt_ms(percentile(fhir, 50))} ms, "
        f"p99 {fmt_ms(percentile(fhir, 99))} ms"
    )
    stored = checks["observations"]
    lost = accepted - stored
    print(
        f"checks: {accepted} reports accepted, {stored} Observations stored"
        f"{'' if lost == 0 else f' ({-lost:+d})'}, {checks['evaluated']} readings evaluated, "
        f"{checks['critical']} critical reports accepted, {checks['alerts']} alerts opened, "
        f"{checks['pages']} webhooks received, {checks['dead']} dead tasks"
    )
    if load["error_at"]:
        print(f"  client errors (time from the load's start): {', '.join(load['error_at'])}")
    for note in checks["notes"]:
        print(f"  !!!  {note}")
    halves = [s for s in samples if s.elapsed >= samples[-1].elapsed / 2 and s.cpu]
    if halves:
        mean = {g: sum(s.cpu.get(g, 0.0) for s in halves) / len(halves) for g in CPU_GROUPS}
        other = sum(s.cpu.get("other", 0.0) for s in halves) / len(halves)
        print(
            f"CPU, second half, cores of {os.cpu_count()}: "
            + ", ".join(f"{g} {mean[g]:.2f}" for g in CPU_GROUPS)
            + f" (outside this benchmark: {other:.2f})"
        )
    nothing_lost = lost <= 0 and not checks["dead"]
    kept_up = accepted >= 0.98 * scheduled
    print(
        f"\nRSS flat: {'yes' if flat else 'no'} (every process grew less than {args.rss_mib:g} "
        f"MiB and less than {args.rss_pct:g} % after warm-up)"
    )
    print(
        f"backlog: {'growing' if growing else 'steady'} (queues + outbox and readings not yet "
        f"evaluated each grew by at most {limit:.0f} over the second half)"
    )
    print(
        f"API kept up with the offered rate: {'yes' if kept_up else 'no'} (accepted "
        f"{100 * accepted / scheduled:.0f} % of the {scheduled} reports scheduled)"
    )
    print(
        f"nothing lost: {'yes' if nothing_lost else 'NO'} (every accepted report stored, no dead "
        f"task; {checks['evaluated']} of {stored} readings evaluated when the drain ended)"
    )
    return flat and not growing and nothing_lost and kept_up


# --------------------------------------------------------------------------------------------
# Main


def soak(args: argparse.Namespace, logs: Path) -> int:
    """Start the stack, load it, sample, check; the exit status."""
    urls = {"redis": args.redis_url, "rabbitmq": args.amqp_url}
    broker_url = urls[args.broker]
    receiver = Receiver()
    queue = ""
    extra_env = dict(item.split("=", 1) for item in args.env)
    traced = logs / "tracemalloc" if args.tracemalloc else None
    if traced is not None:
        extra_env |= tracemalloc_env(traced, args.tracemalloc)
    try:
        with careloop_stack(
            "soak",
            broker_url,
            logs,
            api_workers=args.api_workers,
            worker_concurrency=args.worker_concurrency,
            extra_env=extra_env,
        ) as (stack, env, pg_url):
            queue = env["CARELOOP_QUEUE"]
            run_cli(env, "notify", "add-webhook", receiver.url)
            client_id, client_secret = create_client(env)
            token = fetch_token(stack.api.url, client_id, client_secret)
            return run_soak(args, stack, token, broker_url, queue, pg_url, receiver, traced)
    finally:
        receiver.close()
        if queue and args.broker == "rabbitmq":
            # careloop_stack deletes the routine queue; the urgent one is this run's too.
            try:
                delete_queue(broker_url, f"{queue}.urgent")
            except Exception as exc:
                print(f"  !!!  could not delete queue {queue}.urgent: {exc!r}", file=sys.stderr)


def run_soak(
    args: argparse.Namespace,
    stack: CareloopStack,
    token: str,
    broker_url: str,
    queue: str,
    pg_url: str,
    receiver: Receiver,
    traced: Path | None,
) -> int:
    """The load, the rows, the drain, the summary."""
    spec = LoadSpec(
        stack.api.url,
        token,
        args.rate,
        args.clients,
        args.minutes * 60,
        args.patients,
        args.alert_every,
        args.search_rate,
        secrets.token_hex(3),
        iso(datetime.now(UTC) - timedelta(days=1)),
    )
    roles = Roles(stack)
    depth = BrokerDepth(broker_url, queue)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        load = Load(spec)
        try:
            sampler = Sampler(roles, depth, conn, load, time.monotonic())
            sampler.begin()
            columns = list(roles.current())
            print_header(columns)
            tick = 1
            marked = False
            while load.running():
                due = sampler.started + tick * args.interval
                while time.monotonic() < due and load.running():
                    time.sleep(min(0.2, max(0.0, due - time.monotonic())))
                if not load.running() and time.monotonic() < due - args.interval / 2:
                    break
                sample = sampler.take()
                if traced is not None and not marked and sample.elapsed >= args.warmup:
                    tracemalloc_mark(traced, "first")
                    marked = True
                new = [r for r in sample.rss if r not in columns]
                if new:
                    columns += new
                    print_header(columns)
                print_row(sample, columns)
                tick += 1
            result = load.result()
        finally:
            load.kill()
        drain = wait_drained(sampler, args.drain_timeout)
        if traced is not None:
            tracemalloc_mark(traced, "last")  # quiet now: what is still allocated was kept
        counts = db_counts(conn)
        time.sleep(1.0)  # the last pages in flight
        checks: dict[str, Any] = {
            "drain": f"{drain:.1f} s after the load" if drain is not None else "NOT (timed out)",
            "observations": fhir_total(stack.api.url, token, "Observation"),
            "critical": load.count(ALERTS),
            "late": load.count(LATE),
            "unsent": load.count(UNSENT),
            "pages": receiver.received,
            "notes": list(roles.notes),
            **counts,
        }
        depth.close()
    logged = stack.worker.log_lines(r"\bERROR\b|^Traceback") + stack.api.log_lines(
        r"\bERROR\b|^Traceback"
    )
    checks["notes"] += [f"log: {line[:300]}" for line in logged[:5]]
    if not sampler.samples:
        print("no samples taken")
        return 1
    good = print_summary(args, sampler.samples, result, checks)
    if traced is not None:
        print_tracemalloc(traced, sampler.samples[-1].pids)
    return 0 if good else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Soak careloop: RSS of each process and the backlog under a steady load.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=25.0, help="reports/s offered")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between rows")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds before the RSS baseline"
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent POSTs at most")
    parser.add_argument("--patients", type=int, default=1000, help="routine patients")
    parser.add_argument(
        "--alert-every", type=int, default=200, help="one report in N is critical (0: none)"
    )
    parser.add_argument("--search-rate", type=float, default=2.0, help="FHIR requests/s")
    parser.add_argument("--broker", choices=BROKERS, default="redis")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/11", help="Redis broker (a db number)"
    )
    parser.add_argument(
        "--amqp-url", default="amqp://guest:guest@127.0.0.1:5672//", help="RabbitMQ broker"
    )
    parser.add_argument("--api-workers", type=int, default=2, help="careloop serve --workers")
    parser.add_argument(
        "--worker-concurrency", type=int, default=4, help="careloop worker --concurrency"
    )
    parser.add_argument("--rss-mib", type=float, default=20.0, help="RSS flat: growth below")
    parser.add_argument("--rss-pct", type=float, default=10.0, help="RSS flat: growth % below")
    parser.add_argument(
        "--backlog-items",
        type=float,
        default=50.0,
        help="backlog steady: growth over the second half at most max(this, 2 s of --rate)",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace Python allocations in careloop's processes (slows them; lower --rate)",
    )
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="max s to drain")
    parser.add_argument("--quick", action="store_true", help="1 minute, a row every 5 s")
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs in DIR")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CARELOOP_X=VALUE",
        help="extra careloop setting for all its processes (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = min(args.minutes, 1.0)
        args.interval = min(args.interval, 5.0)
        args.warmup = min(args.warmup, 15.0)
    if min(args.rate, args.minutes, args.interval) <= 0 or args.clients < 1:
        parser.error("--rate, --minutes, --interval and --clients must be positive")
    if args.patients < 1 or args.alert_every < 0:
        parser.error("--patients must be positive and --alert-every at least 0")
    for item in args.env:
        if "=" not in item or not item.startswith("CARELOOP_"):
            parser.error(f"--env takes CARELOOP_NAME=VALUE, not {item!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak; 0 when RSS stayed flat, the backlog steady and nothing was lost."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    print(
        f"careloop soak: PostgreSQL {pg_version()}, {args.broker}; API {args.api_workers} "
        f"workers, worker --concurrency {args.worker_concurrency} --pool threads, beat; "
        f"{args.rate:g} reports/s (1 in {args.alert_every} critical) and {args.search_rate:g} "
        f"FHIR requests/s for {args.minutes:g} min, a row every {args.interval:g} s; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    if args.env:
        print(f"careloop settings: {' '.join(args.env)}")
    with tempfile.TemporaryDirectory(prefix="careloop-soak-") as tmp:
        logs = Path(tmp)
        try:
            return soak(args, logs)
        finally:
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for path in logs.glob("*.log"):
                    shutil.copy(path, args.logs / path.name)
                print(f"logs in {args.logs}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; processes stopped, queues deleted, database dropped", file=sys.stderr)
        sys.exit(130)
