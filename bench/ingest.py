"""Ingest benchmark: how many PHQ-9 symptom reports per second careloop turns into FHIR.

Starts careloop as a real server (``careloop serve``, uvicorn workers) on a fresh PostgreSQL
database, and next to it the bare endpoint of ``bench/bare_app.py`` (same uvicorn, same workers,
parsing the same body but storing nothing). Then drives load on loopback, one phase at a time:

* ``bare``   ``POST /v1/symptom-reports`` on the bare app: the framework floor;
* ``single`` ``POST /v1/symptom-reports``: one distinct PHQ-9 report per request;
* ``batch``  ``POST /v1/symptom-reports/batch``: ``--batch-size`` distinct reports per request.

Every report is distinct (1,000 synthetic patients, distinct effective times in the past), so
none is a duplicate. Each creates a QuestionnaireResponse, an Observation and a Provenance, plus
a Patient the first time its patient is seen. Load comes from ``wrk`` with ``bench/ingest.lua``
when installed (``apt-get install wrk``), else from an asyncio httpx client. The batch phase uses
the httpx client by default (``--batch-client``): a batch request lasts seconds, and wrk drops
the requests in flight at its deadline, which would undercount; httpx lets them finish and times
the phase to the last answer.

After each careloop phase the Observations stored (the ``total`` of
``GET /fhir/Observation?_count=0``) are compared with the 201 answers counted by the client
(wrk cannot wait for the requests in flight when it stops: the server may store those too).
A second table shows the CPU each group of processes used per phase, read from ``/proc``: it
tells a saturated server from one that waits, and shows when something else loaded the machine.
The database is dropped and the servers stopped at the end, also on error, Ctrl-C or SIGTERM.

    .venv/bin/python bench/ingest.py            # 15 s per phase, 32 connections, 2 workers
    .venv/bin/python bench/ingest.py --quick    # smoke test, 3 s per phase
    .venv/bin/python bench/ingest.py --env CARELOOP_RELAY_AFTER_COMMIT=false   # a setting
    .venv/bin/python bench/ingest.py --profile /tmp/prof    # py-spy the workers, then:
    .venv/bin/python bench/profile_summary.py /tmp/prof/single-*.txt
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import (
    BENCH,
    HOST,
    VENV_BIN,
    Server,
    careloop_cmd,
    create_client,
    delete_queue,
    descendants,
    fetch_token,
    free_port,
    fresh_database,
    host_jiffies,
    percentile,
    pg_sessions,
    pg_version,
    proc_stats,
    raise_keyboard_interrupt,
)

LUA_SCRIPT = BENCH / "ingest.lua"
PATIENT_SYSTEM = "https://bench.careloop.example/patients"
RESOURCES_PER_REPORT = 3  # QuestionnaireResponse, Observation, Provenance (+ Patient when new)
DAY_MS = 86_400_000
GOAL_SINGLE_REPORTS = 1_000.0
GOAL_BATCH_RESOURCES = 20_000.0


# --------------------------------------------------------------------------------------------
# Reports


def report_body(n: int, patients: int, base_ms: int) -> dict[str, Any]:
    """Report number ``n``: patient ``n % patients``, effective ``n`` ms before ``base_ms``.

    The same reports ``bench/ingest.lua`` generates, for the httpx fallback.
    """
    at = base_ms - n
    a = n % 4
    effective = datetime.fromtimestamp(at // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {
        "patient": {"system": PATIENT_SYSTEM, "value": f"bench-{n % patients:05d}"},
        "instrument": "phq-9",
        "answers": [(a + i) % 4 for i in range(9)],
        "difficulty": n % 4,
        "effective": f"{effective}.{at % 1000:03d}Z",
    }


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class PhaseResult:
    """What one load phase measured, as the client saw it."""

    name: str
    duration_s: float
    sent: int
    answered: int
    reports_per_request: int
    status: Counter[int] = field(default_factory=Counter)
    items: Counter[int] = field(default_factory=Counter)
    """Per-report status inside batch answers."""
    errors: dict[str, int] = field(default_factory=dict)
    """Socket errors and timeouts."""
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    new_patients: int = 0
    stored_observations: int | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU used during the phase, in cores (1.0 = one core busy all the time), by group."""

    @property
    def created(self) -> int:
        """Reports answered 201 (one per 201 response, or per 201 item of a batch)."""
        return self.items[201] if self.reports_per_request > 1 else self.status[201]

    @property
    def non_2xx(self) -> int:
        """Responses whose status is not 2xx."""
        return sum(n for code, n in self.status.items() if not 200 <= code < 300)

    @property
    def items_not_201(self) -> int:
        """Reports inside batch answers that were not created."""
        return sum(n for code, n in self.items.items() if code != 201)

    @property
    def socket_errors(self) -> int:
        """Connect/read/write errors and timeouts."""
        return sum(self.errors.values())

    @property
    def in_flight(self) -> int:
        """Reports sent but unanswered when the client stopped (the server may still store them)."""
        return max(0, self.sent - self.answered) * self.reports_per_request

    def rate(self, count: float) -> float:
        """``count`` per second of the phase."""
        return count / self.duration_s if self.duration_s > 0 else 0.0


@dataclass
class CpuSnapshot:
    """CPU seconds used so far by each process, and by the machine."""

    at: float
    procs: dict[int, tuple[int, str, float]]
    host: tuple[int, int]

    client: float
    """CPU seconds of this process and its finished children (wrk, py-spy)."""

    @classmethod
    def take(cls) -> CpuSnapshot:
        """Now."""
        t = os.times()
        client = t.user + t.system + t.children_user + t.children_system
        return cls(time.monotonic(), proc_stats(), host_jiffies(), client)


def cpu_used(
    before: CpuSnapshot, after: CpuSnapshot, server: Server, task_worker: Server | None = None
) -> dict[str, float]:
    """Cores used between the snapshots: the server's workers, its other processes, the task
    worker (with ``--broker``), PostgreSQL, the load generator and everything else (the whole
    machine minus those)."""
    seconds = after.at - before.at
    if seconds <= 0 or server.proc is None:
        return {}
    workers = set(server.worker_pids())
    family = descendants(after.procs, server.proc.pid)
    tasks = (
        descendants(after.procs, task_worker.proc.pid) | {task_worker.proc.pid}
        if task_worker is not None and task_worker.proc is not None
        else set()
    )
    groups = {
        "workers": 0.0,
        "server other": 0.0,
        "task worker": 0.0,
        "postgres": 0.0,
        "load client": 0.0,
    }
    for pid, (_, comm, cpu) in after.procs.items():
        used = cpu - before.procs.get(pid, (0, "", 0.0))[2]
        if pid in workers:
            groups["workers"] += used
        elif pid in family:
            groups["server other"] += used
        elif pid in tasks:
            groups["task worker"] += used
        elif comm.startswith("postgres"):
            groups["postgres"] += used
    groups["load client"] = after.client - before.client
    busy = after.host[0] - before.host[0]
    total = after.host[1] - before.host[1]
    cores = os.cpu_count() or 1
    host_cores = cores * busy / total if total else 0.0
    result = {name: used / seconds for name, used in groups.items()}
    result["everything else"] = max(0.0, host_cores - sum(result.values()))
    result["machine"] = host_cores
    return result


# --------------------------------------------------------------------------------------------
# careloop client set-up and FHIR counts


def fhir_total(base_url: str, token: str, rtype: str) -> int:
    """The ``total`` of ``GET /fhir/{rtype}?_count=0``."""
    response = httpx.get(
        f"{base_url}/fhir/{rtype}",
        params={"_count": "0"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    if response.status_code != 200:
        raise RuntimeError(f"GET /fhir/{rtype}?_count=0: {response.status_code} {response.text}")
    return int(response.json()["total"])


def settled_total(base_url: str, token: str, rtype: str, timeout_s: float = 120.0) -> int:
    """``fhir_total`` once requests still running on the server have finished (stable twice)."""
    deadline = time.monotonic() + timeout_s
    last = fhir_total(base_url, token, rtype)
    stable = 0
    while stable < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = fhir_total(base_url, token, rtype)
        stable = stable + 1 if now == last else 0
        last = now
    return last


# --------------------------------------------------------------------------------------------
# Load: wrk


@dataclass(frozen=True)
class Load:
    """One load phase: where, what, how hard and how long."""

    name: str
    url: str
    batch_size: int  # 0: one report per request
    connections: int
    duration_s: float
    token: str | None
    patients: int
    base_ms: int
    timeout_s: float
    threads: int = 1

    @property
    def per_request(self) -> int:
        """Reports in one request."""
        return max(1, self.batch_size)


def run_wrk(load: Load, verbose: bool) -> PhaseResult:
    """Drive ``load`` with wrk and ``bench/ingest.lua``."""
    threads = max(1, min(load.threads, load.connections))
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{load.connections}",
        f"-d{max(1, round(load.duration_s))}s",
        f"--timeout={load.timeout_s:.0f}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        load.url,
        "--",
        "batch" if load.batch_size else "single",
        str(load.per_request),
        str(load.patients),
        str(load.base_ms),
        str(threads),
        load.token or "-",
    ]
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=load.duration_s + 120, check=False
    )
    if verbose:
        print(out.stdout.replace("BENCH_JSON", "  raw:"), file=sys.stderr)
    lines = [line for line in out.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = orjson.loads(lines[-1].removeprefix("BENCH_JSON "))
    lat = data["latency_us"]
    return PhaseResult(
        name=load.name,
        duration_s=data["duration_us"] / 1e6,
        sent=int(data["sent"]),
        answered=int(data["answered"]),
        reports_per_request=load.per_request,
        status=Counter({int(k): int(v) for k, v in data["status"].items()}),
        items=Counter({int(k): int(v) for k, v in data["items"].items()}),
        errors={k: int(v) for k, v in data["errors"].items() if k != "status" and v},
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
    )


# --------------------------------------------------------------------------------------------
# Load: asyncio httpx fallback


async def _run_httpx(load: Load) -> PhaseResult:
    counter = iter(range(sys.maxsize))
    latencies: list[float] = []
    status: Counter[int] = Counter()
    items: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    headers = {"Content-Type": "application/json"}
    if load.token:
        headers["Authorization"] = f"Bearer {load.token}"
    limits = httpx.Limits(max_connections=load.connections, max_keepalive_connections=None)
    start = time.perf_counter()
    deadline = start + load.duration_s

    def body() -> bytes:
        if load.batch_size:
            reports = [
                report_body(next(counter), load.patients, load.base_ms)
                for _ in range(load.batch_size)
            ]
            return orjson.dumps({"reports": reports})
        return orjson.dumps(report_body(next(counter), load.patients, load.base_ms))

    async def user(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            content = body()
            sent += 1
            t0 = time.perf_counter()
            try:
                response = await http.post(load.url, content=content, headers=headers)
            except httpx.TimeoutException:
                errors["timeout"] += 1
                continue
            except httpx.HTTPError:
                errors["connect"] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            status[response.status_code] += 1
            if load.batch_size and response.status_code == 200:
                for result in response.json().get("results", []):
                    items[int(result["status"])] += 1

    async with httpx.AsyncClient(limits=limits, timeout=load.timeout_s) as http:
        await asyncio.gather(*(user(http) for _ in range(load.connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    answered = sum(status.values())
    return PhaseResult(
        name=load.name,
        duration_s=elapsed,
        sent=answered,  # every request ran to its end: none left in flight
        answered=answered,
        reports_per_request=load.per_request,
        status=status,
        items=items,
        errors=dict(errors),
        p50_ms=percentile(latencies, 50) * 1000,
        p90_ms=percentile(latencies, 90) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        max_ms=(latencies[-1] if latencies else 0.0) * 1000,
    )


def run_httpx(load: Load) -> PhaseResult:
    """Drive ``load`` with ``load.connections`` asyncio httpx clients (when wrk is missing)."""
    return asyncio.run(_run_httpx(load))


# --------------------------------------------------------------------------------------------
# Profiling (optional)


def start_profilers(
    server: Server, phase: str, duration_s: float, out_dir: Path, gil: bool
) -> list[Any]:
    """``py-spy record`` every worker of ``server`` for the phase (raw, collapsed stacks)."""
    py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy not found (pip install py-spy into .venv): not profiling", file=sys.stderr)
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for pid in server.worker_pids():
        argv = [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(duration_s) - 1)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out_dir / f"{phase}-{pid}.txt"),
            *(["--gil"] if gil else []),
        ]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def wait_profilers(procs: list[Any]) -> None:
    """Wait for the py-spy processes started by ``start_profilers``."""
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(5)


# --------------------------------------------------------------------------------------------
# Report


def fmt(value: float, digits: int = 0) -> str:
    """A number with thousands separators."""
    return f"{value:,.{digits}f}"


def print_table(
    single: PhaseResult, batch: PhaseResult, bare: PhaseResult, args: argparse.Namespace
) -> None:
    """The figures, one row per phase."""
    head = (
        f"{'phase':<34}{'req/s':>9}{'reports/s':>11}{'FHIR res/s':>12}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'errors':>8}"
    )
    print()
    print(head)
    print("-" * len(head))

    def row(label: str, r: PhaseResult, reports: bool) -> None:
        res = r.rate(RESOURCES_PER_REPORT * r.created + r.new_patients)
        print(
            f"{label:<34}{fmt(r.rate(r.answered), 0 if r.rate(r.answered) >= 10 else 2):>9}"
            f"{fmt(r.rate(r.created)) if reports else '-':>11}"
            f"{fmt(res) if reports else '-':>12}"
            f"{fmt(r.p50_ms, 1):>9}{fmt(r.p99_ms, 1):>9}{r.non_2xx:>9}{r.socket_errors:>8}"
        )

    row("careloop single  /v1/symptom-reports", single, True)
    row(f"careloop batch   ({args.batch_size}/request)", batch, True)
    row("bare parse-only endpoint", bare, False)
    print("-" * len(head))
    bare_rate = bare.rate(bare.status[201])
    ratio = single.rate(single.created) / bare_rate if bare_rate else 0.0
    print(f"careloop single reports/s / bare requests/s = {ratio:.3f}")
    single_ok = single.rate(single.created) >= GOAL_SINGLE_REPORTS
    batch_res = batch.rate(RESOURCES_PER_REPORT * batch.created + batch.new_patients)
    batch_ok = batch_res >= GOAL_BATCH_RESOURCES
    print(
        f"goal single >= {fmt(GOAL_SINGLE_REPORTS)} reports/s: "
        f"{'met' if single_ok else 'NOT met'}; "
        f"goal batch >= {fmt(GOAL_BATCH_RESOURCES)} resources/s: {'met' if batch_ok else 'NOT met'}"
    )
    groups = ["workers", "server other", "task worker", "postgres", "load client"]
    groups += ["everything else", "machine"]
    print(
        f"\nCPU during each phase, in cores of {os.cpu_count()} (server other: careloop's "
        "supervisor and its embedded task worker; task worker: `careloop worker` with --broker)"
    )
    print(f"{'phase':<10}" + "".join(f"{g:>16}" for g in groups))
    for r in (single, batch, bare):
        print(f"{r.name:<10}" + "".join(f"{r.cpu.get(g, 0.0):>16.2f}" for g in groups))
    print(
        "FHIR res/s = (3 x reports created + Patients created) / s; "
        "batch latency is per request of "
        f"{args.batch_size} reports"
    )


def check(result: PhaseResult) -> list[str]:
    """Problems in a careloop phase: stored Observations against 201s, non-2xx, errors."""
    problems = []
    stored = result.stored_observations
    created = result.created
    line = f"{result.name}: {created:,} reports answered 201, {stored:,} Observations stored"
    if stored is None:
        problems.append(f"{result.name}: Observations not counted")
    elif stored == created:
        print(f"  ok   {line}")
    elif created <= stored <= created + result.in_flight:
        print(
            f"  ok   {line} (+{stored - created} from {result.in_flight} reports still in "
            "flight when the client stopped)"
        )
    else:
        problems.append(f"MISMATCH {line} ({result.in_flight} reports were in flight)")
    if result.non_2xx:
        codes = {c: n for c, n in result.status.items() if not 200 <= c < 300}
        problems.append(f"{result.name}: {result.non_2xx} non-2xx responses {codes}")
    if result.items_not_201:
        codes = {c: n for c, n in result.items.items() if c != 201}
        problems.append(f"{result.name}: {result.items_not_201} batch items not created {codes}")
    other_2xx = sum(n for c, n in result.status.items() if 200 <= c < 300 and c != 201)
    if result.reports_per_request == 1 and other_2xx:
        problems.append(f"{result.name}: {other_2xx} 2xx answers other than 201 (duplicates?)")
    if result.socket_errors:
        problems.append(f"{result.name}: socket errors/timeouts {result.errors}")
    return problems


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Benchmark careloop's symptom-report ingest on PostgreSQL.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--batch-connections",
        type=int,
        default=None,
        help="concurrent connections of the batch phase (default: 2 per worker; a batch "
        "already carries many reports, more connections only queue)",
    )
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--batch-size", type=int, default=500, help="reports per batch request")
    parser.add_argument("--patients", type=int, default=1000, help="synthetic patients")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    parser.add_argument("--quick", action="store_true", help="short smoke run (3 s per phase)")
    parser.add_argument(
        "--client", choices=["auto", "wrk", "httpx"], default="auto", help="load generator"
    )
    parser.add_argument(
        "--batch-client",
        choices=["httpx", "wrk"],
        default="httpx",
        help="load generator of the batch phase: a batch request lasts seconds and wrk drops "
        "the requests in flight at its deadline, which undercounts; the httpx client lets them "
        "finish and times the phase to the last answer (few requests: its overhead is nil)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (-t)")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy record careloop's workers into DIR"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (CPU, not wall time)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CARELOOP_X=VALUE",
        help="extra setting for careloop's server, e.g. CARELOOP_RELAY_AFTER_COMMIT=false "
        "(repeatable)",
    )
    parser.add_argument(
        "--broker",
        default="",
        metavar="URL",
        help="a real broker (redis://127.0.0.1:6379/0, amqp://guest:guest@127.0.0.1:5672//) "
        "with a queue of its own and a `careloop worker` beside the API; default: the "
        "embedded one, as `careloop serve` alone runs",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print wrk's own output")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.warmup = min(args.warmup, 1.0)
    if args.batch_connections is None:
        args.batch_connections = min(args.connections, 2 * args.workers)
    if min(args.connections, args.batch_connections, args.workers, args.batch_size) < 1:
        parser.error("connections, workers and batch size must be at least 1")
    for item in args.env:
        if "=" not in item or not item.startswith("CARELOOP_"):
            parser.error(f"--env takes CARELOOP_NAME=VALUE, not {item!r}")
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every report was stored and answered 2xx, 1 otherwise."""
    args = parse_args(argv)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)

    def drive(load: Load) -> PhaseResult:
        if use_wrk and not (load.batch_size and args.batch_client == "httpx"):
            return run_wrk(load, args.verbose)
        return run_httpx(load)

    servers: list[Server] = []
    queue = f"bench-ingest-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="careloop-bench-") as tmp, fresh_database() as db_url:
        logs = Path(tmp)
        try:
            cl_port, bare_port = free_port(), free_port()
            while bare_port == cl_port:
                bare_port = free_port()
            env = {
                **os.environ,
                "CARELOOP_DATABASE_URL": db_url,
                "CARELOOP_BASE_URL": f"http://{HOST}:{cl_port}",
                "CARELOOP_TOKEN_LIFETIME_SECONDS": "3600",
                # The load generator is one client: per-client rate limits would measure themselves.
                "CARELOOP_RATE_LIMIT_API_PER_CLIENT": "",
                "CARELOOP_RATE_LIMIT_TOKEN_PER_CLIENT": "",
                # the embedded task broker (SQLite) and anything else on disk: a scratch dir
                "CARELOOP_DATA_DIR": str(logs / "data"),
                **dict(item.split("=", 1) for item in args.env),
            }
            task_worker: Server | None = None
            if args.broker:
                env["CARELOOP_BROKER_URL"] = args.broker
                env["CARELOOP_QUEUE"] = queue
                task_worker = Server(
                    "worker",
                    careloop_cmd("worker", "--concurrency", "4", "--pool", "threads"),
                    env,
                    0,
                    logs,
                )
            careloop = Server(
                "careloop",
                [
                    str(VENV_BIN / "careloop"),
                    "serve",
                    "--host",
                    HOST,
                    "--port",
                    str(cl_port),
                    "--workers",
                    str(args.workers),
                ],
                env,
                cl_port,
                logs,
            )
            bare = Server(
                "bare",
                [
                    str(VENV_BIN / "uvicorn"),
                    "bare_app:app",
                    "--app-dir",
                    str(BENCH),
                    "--host",
                    HOST,
                    "--port",
                    str(bare_port),
                    "--workers",
                    str(args.workers),
                    "--log-level",
                    "info",
                    "--no-access-log",
                ],
                {k: v for k, v in env.items() if not k.startswith("CARELOOP_")},
                bare_port,
                logs,
            )
            servers = [careloop, bare]
            for server in servers:
                server.start()
            for server in servers:
                server.wait_ready(60)
            if task_worker is not None:
                servers.append(task_worker)
                task_worker.start()
                task_worker.wait_log(r"\S+@\S+ ready\.", 90)
            client_id, secret = create_client(env)
            token = fetch_token(careloop.url, client_id, secret)

            if not use_wrk:
                generator = "asyncio httpx (wrk not installed)"
            elif args.batch_client == "httpx":
                generator = "wrk + bench/ingest.lua, asyncio httpx for batch"
            else:
                generator = "wrk + bench/ingest.lua"
            print(
                f"careloop ingest benchmark: PostgreSQL {pg_version()}, {args.workers} workers "
                f"each, {args.connections} connections ({args.batch_connections} for batch), "
                f"{args.duration:g} s per phase, {args.patients:,} patients, load: {generator}, "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
            )
            if args.env:
                print(f"careloop settings: {' '.join(args.env)}")
            now_ms = (int(time.time()) - 60) * 1000

            def load(
                name: str, server: Server, path: str, batch: int, conns: int, secs: float, day: int
            ) -> Load:
                return Load(
                    name=name,
                    url=server.url + path,
                    batch_size=batch,
                    connections=conns,
                    duration_s=secs,
                    token=token if server is careloop else None,
                    patients=args.patients,
                    base_ms=now_ms - day * 30 * DAY_MS,  # 30 days of distinct times per phase
                    timeout_s=max(60.0, 4 * args.duration),
                    threads=args.wrk_threads,
                )

            single_path = "/v1/symptom-reports"
            if args.warmup > 0:
                print(f"warm-up {args.warmup:g} s per server ...")
                drive(load("warm-up", careloop, single_path, 0, args.connections, args.warmup, 0))
                drive(load("warm-up", bare, single_path, 0, args.connections, args.warmup, 0))

            def careloop_phase(
                name: str, path: str, batch: int, conns: int, day: int
            ) -> PhaseResult:
                obs0 = settled_total(careloop.url, token, "Observation")
                pat0 = fhir_total(careloop.url, token, "Patient")
                print(f"{name}: {args.duration:g} s, {conns} connections ...")
                profilers = (
                    start_profilers(careloop, name, args.duration, args.profile, args.profile_gil)
                    if args.profile
                    else []
                )
                before = CpuSnapshot.take()
                sessions0 = pg_sessions(db_url)
                result = drive(load(name, careloop, path, batch, conns, args.duration, day))
                result.cpu = cpu_used(before, CpuSnapshot.take(), careloop, task_worker)
                print(
                    f"{name}: {pg_sessions(db_url) - sessions0} new PostgreSQL sessions during "
                    "the phase (a pool that fits the concurrency opens few)"
                )
                wait_profilers(profilers)
                result.stored_observations = (
                    settled_total(careloop.url, token, "Observation") - obs0
                )
                result.new_patients = fhir_total(careloop.url, token, "Patient") - pat0
                return result

            print(f"bare: {args.duration:g} s, {args.connections} connections ...")
            before = CpuSnapshot.take()
            bare_result = drive(
                load("bare", bare, single_path, 0, args.connections, args.duration, 3)
            )
            bare_result.cpu = cpu_used(before, CpuSnapshot.take(), bare)
            single = careloop_phase("single", single_path, 0, args.connections, 1)
            batch = careloop_phase(
                "batch", single_path + "/batch", args.batch_size, args.batch_connections, 2
            )

            print_table(single, batch, bare_result, args)
            print("\ncorrectness:")
            problems = check(single) + check(batch)
            if bare_result.non_2xx or bare_result.socket_errors:
                problems.append(
                    f"bare: {bare_result.non_2xx} non-2xx, socket errors {bare_result.errors}"
                )
            logged = careloop.log_lines(r"\bERROR\b|\bCRITICAL\b|^Traceback")
            if logged:
                shown = "\n".join(f"       {line[:300]}" for line in logged[:10])
                problems.append(f"careloop logged {len(logged)} ERROR/Traceback lines:\n{shown}")
            for problem in problems:
                print(f"  !!!  {problem}")
            if not problems:
                print("  no non-2xx answers, no socket errors, no server errors")
            if args.profile:
                print(f"\npy-spy profiles (raw collapsed stacks) in {args.profile}")
            return 1 if problems else 0
        except Exception:
            for server in servers:
                if server.proc is not None:
                    print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            for server in servers:
                server.stop()
            if args.broker:
                try:
                    delete_queue(args.broker, queue)
                except Exception as exc:  # clean-up must not hide the real error
                    print(f"could not delete queue {queue}: {exc!r}", file=sys.stderr)
                if server.leftovers:
                    print(
                        f"  !!!  {server.name} left {server.leftovers} processes running after "
                        "it exited; terminated them"
                    )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped and database dropped", file=sys.stderr)
        sys.exit(130)
