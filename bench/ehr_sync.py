"""EHR sync benchmark: symptom reports from the app API into a connected EHR (``ehr.push``).

Runs careloop as real processes on a fresh PostgreSQL database and a Redis queue of its own
(``careloop serve --workers 2``, ``careloop worker --concurrency 4 --pool threads``,
``careloop beat``), and the test EHR of ``tests/ehr_server`` in a child process of its own (so
it shares no GIL with the load or this process). The child serves ``TestEHR`` on loopback and
obeys JSON commands on stdin: register careloop as a Backend Services client (keys from
careloop's ``/.well-known/jwks.json``), seed Patients carrying the app's identifiers
(``https://app.example/patients|p-<n>``), throttle, dump what it stores. careloop is connected
with ``careloop ehr add``; every report then becomes one pending push (the QuestionnaireResponse,
Observation and Provenance, conditional creates on careloop's business identifiers); a relay
publishes one ``ehr.push`` per connection of what it relays, and that push drains the
connection: up to 50 reports of any patients per transaction Bundle until none is pending
(``EHR requests`` below counts the Bundles; per-task stages measure the task that ran, which is
often not the report's own).

The app side is a separate process (asyncio httpx) POSTing distinct routine PHQ-9 reports (no
alert), one per patient at a time. Phases, each drained before the next:

* ``warm-up``    one report per patient (batches): links every patient, warms every process;
* ``lag``        single POSTs at a moderate rate: lag from the 201 answer to the Observation
                 being stored in the EHR (its ``meta.lastUpdated``, set in the EHR's commit;
                 both clocks are this machine's);
* ``throughput`` batches (``POST /v1/symptom-reports/batch``) at a high rate for a fixed time:
                 resources/s stored in the EHR (Observation + QuestionnaireResponse +
                 Provenance, by ``meta.lastUpdated``) while the app posts, then to the drain;
* ``throttle``   single POSTs at a moderate rate for three periods: healthy, then 429 with
                 ``Retry-After: 1`` on a share of the EHR's ``POST /fhir`` requests (the child
                 tops up ``TestEHR.inject(Fault.http_429("1"), ...)`` as requests arrive), then
                 healthy again; writes must slow down, not fail.

At the end the EHR's resources are dumped and checked against the reports the API accepted: as
many Observations (and QuestionnaireResponses, Provenances) as reports, none missing, none
duplicated by careloop's identifier; no refused write (``ehr_failure``), no dead task. Where the
time goes comes from PostgreSQL (``symptom_report.created_at``, the ``ehr.push`` outbox row's
``dispatched_at``, ``ehr_write.updated_at``), the worker's log (task received / run time) and
the EHR's own handling time. The database is dropped, the processes stopped and the queue
deleted at the end, also on error, Ctrl-C or SIGTERM.

    .venv/bin/python bench/ehr_sync.py                 # full run (~8 min at today's sync rate)
    .venv/bin/python bench/ehr_sync.py --quick         # smoke test (~4 min)
    .venv/bin/python bench/ehr_sync.py --tp-rate 0 --batch-size 100   # unthrottled app side
    .venv/bin/python bench/ehr_sync.py --env CARELOOP_EHR_CIRCUIT_FAILURES=100 --logs /tmp/ehr
    .venv/bin/python bench/ehr_sync.py --profile /tmp/prof   # py-spy the worker (throughput)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import psycopg
from common import (
    HOST,
    ROOT,
    VENV_BIN,
    CareloopStack,
    CpuSnapshot,
    TaskLog,
    careloop_stack,
    cpu_by_group,
    cpu_snapshot,
    create_client,
    fetch_token,
    fmt_ms,
    iso,
    percentile,
    pg_version,
    raise_keyboard_interrupt,
    run_cli,
    stage_ms,
)

APP_SYSTEM = "https://app.example/patients"
OBS_SID = "https://careloop.io/fhir/sid/observation"
QR_SID = "https://careloop.io/fhir/sid/questionnaire-response"
SYNCED = ("Observation", "QuestionnaireResponse", "Provenance")
EHR_CLIENT = "careloop-bench"
EHR_SCOPES = "system/*.cruds"
GOAL_RESOURCES_S = 500.0
GOAL_P99_LAG_MS = 1000.0
PHASE_SPAN = 10_000_000
"""Report numbers of phase i are i * PHASE_SPAN + n: distinct effective times across phases."""


def epoch(instant: str) -> float:
    """A FHIR instant (``...Z``) as wall-clock seconds."""
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


# ============================================================================================
# The EHR child process (``ehr_sync.py --ehr-child``): TestEHR plus a JSON command loop


def _throttle(ehr: Any, fault: Any, share: float, seconds: float, out: dict[str, Any]) -> None:
    """For ``seconds``, keep ``share`` of the EHR's ``POST /fhir`` requests faulted."""
    start_len = len(ehr.requests)
    out["start"] = time.time()
    injected = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        posts = sum(1 for m, p, _ in ehr.requests[start_len:] if m == "POST" and p == "/fhir")
        wanted = int(share * (posts + 1))
        if wanted > injected:
            ehr.inject(fault, count=wanted - injected, method="POST", path_prefix="/fhir")
            injected = wanted
        time.sleep(0.01)
    ehr.clear_faults()
    log = ehr.requests[start_len:]
    out.update(
        end=time.time(),
        injected=injected,
        posts=sum(1 for m, p, _ in log if m == "POST" and p == "/fhir"),
        served_429=sum(1 for m, p, s in log if m == "POST" and p == "/fhir" and s == 429),
    )


def ehr_child_main() -> int:
    """Serve the test EHR; answer one JSON line per command line on stdin."""
    sys.path.insert(0, str(ROOT / "tests"))
    from ehr_server import Fault, TestEHR
    from ehr_server.rest import FhirService

    timings: dict[str, list[float]] = {"transaction": [], "other": []}
    handle = FhirService.handle

    def timed_handle(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return handle(self, request, *args, **kwargs)
        finally:
            kind = "transaction" if request.method == "POST" and not request.parts else "other"
            timings[kind].append((time.perf_counter() - t0) * 1000)

    FhirService.handle = timed_handle  # type: ignore[method-assign]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    throttles: list[dict[str, Any]] = []
    threads: list[threading.Thread] = []

    def answer(data: dict[str, Any]) -> None:
        sys.stdout.write(orjson.dumps(data).decode() + "\n")
        sys.stdout.flush()

    with TestEHR(token_lifetime=300) as ehr:
        answer({"base_url": ehr.base_url, "pid": os.getpid()})
        for line in sys.stdin:
            cmd = orjson.loads(line)
            what = cmd["cmd"]
            if what == "register":
                ehr.register_client(cmd["client_id"], cmd["scopes"], jwks_url=cmd["jwks_url"])
                answer({"ok": True})
            elif what == "seed_patients":
                for value in cmd["values"]:
                    ehr.seed(
                        {
                            "resourceType": "Patient",
                            "identifier": [{"system": APP_SYSTEM, "value": value}],
                            "active": True,
                        }
                    )
                answer({"seeded": len(cmd["values"])})
            elif what == "throttle":
                record: dict[str, Any] = {"share": cmd["share"]}
                throttles.append(record)
                fault = Fault.http_429(retry_after=cmd["retry_after"])
                thread = threading.Thread(
                    target=_throttle,
                    args=(ehr, fault, cmd["share"], cmd["seconds"], record),
                    daemon=True,
                )
                thread.start()
                threads.append(thread)
                answer({"ok": True})
            elif what == "dump":
                for thread in threads:
                    thread.join(60)
                resources: dict[str, list[tuple[str, str, float, str]]] = {}
                for rtype in SYNCED:
                    rows = []
                    for r in ehr.resources(rtype):
                        idents = r.get("identifier", [])
                        ident = next(
                            (
                                f"{i.get('system')}|{i.get('value')}"
                                for i in ([idents] if isinstance(idents, dict) else idents)
                                if str(i.get("system", "")).startswith("https://careloop.io/")
                            ),
                            "",
                        )
                        first = ehr.history(rtype, r["id"])[0]["meta"]["lastUpdated"]
                        rows.append((r["id"], ident, epoch(first), r["meta"]["versionId"]))
                    resources[rtype] = rows
                requests = Counter(
                    f"{m} {'/fhir' if p == '/fhir' else p.split('/')[1]}:{s}"
                    for m, p, s in ehr.requests
                )
                answer(
                    {
                        "resources": resources,
                        "requests": dict(requests),
                        "timings": {k: sorted(v) for k, v in timings.items()},
                        "throttles": throttles,
                        "tokens": ehr.issued_tokens,
                    }
                )
            elif what == "stop":
                answer({"ok": True})
                break
    return 0


class EhrChild:
    """The test EHR in a child process, driven over its stdin / stdout."""

    def __init__(self, logs: Path) -> None:
        self.log_path = logs / "ehr.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--ehr-child"],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._lines: queue.Queue[bytes] = queue.Queue()
        assert self.proc.stdout is not None
        stdout: IO[bytes] = self.proc.stdout

        def pump() -> None:
            for line in stdout:
                self._lines.put(line)

        threading.Thread(target=pump, name="ehr-child-stdout", daemon=True).start()
        hello = self._read(60)
        self.base_url = str(hello["base_url"])
        self.pid = int(hello["pid"])

    def _read(self, timeout_s: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"the EHR child did not answer in {timeout_s:g} s") from None
        data: dict[str, Any] = orjson.loads(line)
        return data

    def call(self, cmd: str, timeout_s: float = 60, **kwargs: Any) -> dict[str, Any]:
        """Send one command; its answer."""
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the EHR child exited with {self.proc.returncode}:\n{tail}")
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"cmd": cmd, **kwargs}) + b"\n")
        self.proc.stdin.flush()
        return self._read(timeout_s)

    def stop(self) -> None:
        """Ask the child to stop; terminate (then kill) it if it does not."""
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.call("stop", timeout_s=10)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# ============================================================================================
# The app side: a load process POSTing reports


def report_body(n: int, patients: int, base: datetime) -> dict[str, Any]:
    """Routine report ``n``: PHQ-9 totalling 1 (no rule fires), patient ``p-<n % patients>``,
    effective ``n`` ms before ``base``."""
    return {
        "patient": {"system": APP_SYSTEM, "value": f"p-{n % patients}"},
        "instrument": "phq-9",
        "answers": [1 if i == n % 8 else 0 for i in range(8)] + [0],
        "effective": iso(base - timedelta(milliseconds=n)),
    }


@dataclass(frozen=True)
class LoadSpec:
    """One phase's app-side load."""

    api_url: str
    token: str
    batch: int
    """Reports per request; 1 posts singles to ``/v1/symptom-reports``."""
    rate: float
    """Reports/s offered; 0 for as fast as the clients go."""
    clients: int
    seconds: float
    first: int
    patients: int
    base: str


async def _load(spec: LoadSpec) -> dict[str, Any]:
    base = datetime.fromisoformat(spec.base)
    headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
    single = spec.batch == 1
    url = spec.api_url + ("/v1/symptom-reports" if single else "/v1/symptom-reports/batch")
    tickets = itertools.count()
    accepted: list[tuple[str, float, float]] = []
    post_ms: list[float] = []
    status: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    start = time.monotonic()
    deadline = start + spec.seconds

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            k = next(tickets)
            due = start + k * spec.batch / spec.rate if spec.rate > 0 else time.monotonic()
            if due >= deadline:
                return
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            first = spec.first + k * spec.batch
            bodies = [report_body(n, spec.patients, base) for n in range(first, first + spec.batch)]
            content = orjson.dumps(bodies[0] if single else {"reports": bodies})
            sent = time.time()
            try:
                response = await http.post(url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            answered = time.time()
            post_ms.append((answered - sent) * 1000)
            if single:
                status[str(response.status_code)] += 1
                if response.status_code == 201:
                    accepted.append((str(response.json()["id"]), sent, answered))
                continue
            if response.status_code != 200:
                status[f"batch {response.status_code}"] += spec.batch
                continue
            for item in response.json()["results"]:
                status[str(item["status"])] += 1
                if item["status"] == 201:
                    accepted.append((str(item["id"]), sent, answered))

    limits = httpx.Limits(max_connections=spec.clients, max_keepalive_connections=spec.clients)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(client(http) for _ in range(spec.clients)))
    return {
        "accepted": accepted,
        "post_ms": sorted(post_ms),
        "status": dict(status),
        "errors": dict(errors),
        "ended": time.time(),
    }


def load_main(spec: LoadSpec, out: multiprocessing.Queue[dict[str, Any]]) -> None:
    """Entry point of the load process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    result = asyncio.run(_load(spec))
    result["cpu_s"] = time.process_time()
    out.put(result)


class Load:
    """The load process of one phase."""

    def __init__(self, spec: LoadSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._out: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
        self.proc = ctx.Process(target=load_main, args=(spec, self._out), daemon=True)
        self.proc.start()
        self.timeout_s = spec.seconds + 90

    def result(self) -> dict[str, Any]:
        """Wait for the load to finish; its figures."""
        try:
            data: dict[str, Any] = self._out.get(timeout=self.timeout_s)
        finally:
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(5)
        return data


# ============================================================================================
# Phases


@dataclass
class Phase:
    """What one phase did and measured."""

    name: str
    spec: LoadSpec
    start: float = 0.0
    end: float = 0.0
    """Wall clock: when the load started and its last answer arrived."""
    drained_at: float | None = None
    accepted: list[tuple[str, float, float]] = field(default_factory=list)
    """(report id, sent, answered) per report answered 201."""
    status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    post_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    throttle: dict[str, Any] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)
    """Report id -> when the EHR stored its Observation (wall clock)."""
    lags: list[float] = field(default_factory=list)
    """Sorted ms from the 201 answer to the Observation stored in the EHR."""
    writes: list[float] = field(default_factory=list)
    """Sorted EHR store times of this phase's synced resources."""
    marks: list[dict[str, float]] = field(default_factory=list)

    @property
    def offered(self) -> str:
        """Reports/s offered."""
        return f"{self.spec.rate:g}" if self.spec.rate > 0 else "max"

    def app_rate(self) -> float:
        """Reports accepted per second of load."""
        return len(self.accepted) / (self.end - self.start) if self.end > self.start else 0.0

    def ehr_rate(self, start: float, end: float) -> float:
        """Synced resources stored in the EHR per second between two wall-clock times."""
        if end <= start:
            return 0.0
        return sum(1 for t in self.writes if start <= t < end) / (end - start)

    def per_second(self) -> list[int]:
        """Resources stored in the EHR in each second from the start of the load."""
        if not self.writes:
            return []
        counts = Counter(int(t - self.start) for t in self.writes)
        return [counts.get(s, 0) for s in range(max(counts) + 1)]


def written_count(pg_url: str) -> int:
    """careloop's ``ehr_write`` rows in state written."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM ehr_write WHERE state = 'written'").fetchone()
    return int(row[0]) if row else 0


def wait_written(pg_url: str, wanted: int, timeout_s: float) -> float | None:
    """Wait (bounded) until ``wanted`` resources are written; when, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if written_count(pg_url) >= wanted:
            return time.time()
        time.sleep(0.2)
    return None


def run_phase(
    phase: Phase,
    pg_url: str,
    expected_before: int,
    roots: dict[str, int],
    drain_timeout_s: float,
    ehr: EhrChild | None = None,
    throttle: tuple[float, float, str] | None = None,
    profile: tuple[int, Path] | None = None,
) -> int:
    """Run one phase's load, wait for its resources in the EHR; resources expected in all.

    ``profile``: (worker pid, output file) to sample the worker with py-spy during the load.
    """
    spec = phase.spec
    mode = "singles" if spec.batch == 1 else f"batches of {spec.batch}"
    print(
        f"{phase.name}: {mode} at {phase.offered} reports/s from {spec.clients} clients "
        f"for {spec.seconds:g} s ..."
    )
    before: CpuSnapshot = cpu_snapshot()
    phase.start = time.time()
    load = Load(spec)
    spy = start_profile(profile[0], profile[1], spec.seconds) if profile else None
    if throttle is not None and ehr is not None:
        share, seconds, retry_after = throttle
        time.sleep(seconds)  # healthy first
        ehr.call("throttle", share=share, seconds=seconds, retry_after=retry_after)
    data = load.result()
    phase.cpu = cpu_by_group(before, cpu_snapshot(), roots)
    phase.end = float(data["ended"])
    # the load process has exited: its own CPU time, over the load's duration
    phase.cpu["load"] = float(data["cpu_s"]) / max(1e-3, phase.end - phase.start)
    phase.accepted = [(str(a), float(b), float(c)) for a, b, c in data["accepted"]]
    phase.status, phase.errors, phase.post_ms = data["status"], data["errors"], data["post_ms"]
    if spy is not None:
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.terminate()
            spy.wait(10)
    expected = expected_before + 3 * len(phase.accepted)
    phase.drained_at = wait_written(pg_url, expected, drain_timeout_s)
    if phase.drained_at is None:
        print(
            f"  !!!  {phase.name}: {expected - written_count(pg_url)} resources not written "
            f"{drain_timeout_s:g} s after the load"
        )
    else:
        print(
            f"  {len(phase.accepted)} reports accepted, all written "
            f"{phase.drained_at - phase.end:.1f} s after the last answer"
        )
    return expected


# ============================================================================================
# Where the time goes (PostgreSQL and the worker's log)

STAGES = (
    ("201 answered -> ehr.push published", "answered", "published"),
    ("published -> worker received the task", "published", "received"),
    ("received -> task started", "received", "started"),
    ("task started -> stored in the EHR", "started", "ehr"),
    ("stored in the EHR -> task done", "ehr", "done"),
)
EXTRA_STAGES = (
    ("POST sent -> 201 answered", "sent", "answered"),
    ("report row created_at -> 201 answered", "created", "answered"),
    ("ehr.push task run time", "started", "done"),
    ("stored in the EHR -> ehr_write.updated_at", "ehr", "marked"),
)


def report_marks(
    pg_url: str, phase: Phase, obs_stored: dict[str, float], log: TaskLog
) -> list[dict[str, float]]:
    """Every accepted report's milestones (wall-clock seconds) by mark name."""
    ids = [a[0] for a in phase.accepted]
    with psycopg.connect(pg_url) as conn:
        reports = {
            str(r[0]): (str(r[1]), r[2].timestamp())
            for r in conn.execute(
                "SELECT id, resources, created_at FROM symptom_report WHERE id = ANY(%s)", (ids,)
            )
        }
        push_of: dict[str, tuple[str, float | None]] = {}
        for oid, payload, dispatched in conn.execute(
            "SELECT id, payload, dispatched_at FROM outbox_message WHERE task = 'resources.changed'"
        ):
            for ref in orjson.loads(payload)["references"]:
                if ref.startswith("Observation/"):
                    push_of.setdefault(
                        ref, (f"outbox-{oid}", dispatched.timestamp() if dispatched else None)
                    )
        marked = {
            str(r[0]): r[1].timestamp()
            for r in conn.execute(
                "SELECT reference, updated_at FROM ehr_write WHERE reference LIKE 'Observation/%%'"
            )
        }
    out = []
    for report_id, sent, answered in phase.accepted:
        marks: dict[str, float | None] = {"sent": sent, "answered": answered}
        refs, created = reports.get(report_id, ("", None))
        marks["created"] = created
        obs = next((r for r in refs.split() if r.startswith("Observation/")), "")
        task_id, published = push_of.get(obs, ("", None))
        marks["published"] = published
        marks["received"] = log.last_received.get(task_id)  # the last delivery
        marks["started"] = log.started.get(task_id)
        marks["done"] = log.finished.get(task_id)
        marks["ehr"] = obs_stored.get(report_id)
        marks["marked"] = marked.get(obs)
        out.append({k: v for k, v in marks.items() if v is not None})
    return out


def start_profile(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy (idle threads included) on ``pid`` for ``seconds``, raw stacks to ``out``."""
    argv = [str(VENV_BIN / "py-spy"), "record", "--idle", "--nonblocking", "-r", "50"]
    argv += ["-d", str(max(1, round(seconds))), "-f", "raw", "-p", str(pid), "-o", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_profile(path: Path, top: int = 14) -> None:
    """Share of the push threads' samples (waiting included) per careloop source line (samples
    under ``push_to_ehr``: a push that finds its work done by another is not counted)."""
    lines: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for raw in path.read_text().splitlines():
            stack, _, samples = raw.rpartition(" ")
            frames = stack.split(";")
            if not samples.isdigit() or not any(f.startswith("push_to_ehr ") for f in frames):
                continue
            total += int(samples)
            seen = set()
            for frame in frames:
                where = re.search(r"\((careloop/[^)]+:\d+)\)$", frame)
                name = frame.split(" ", 1)[0]
                key = f"{name} {where.group(1)}" if where else ""
                if name in ("create_default_context", "Connection.wait"):
                    key = f"{name} ({frame.split('(', 1)[-1].rstrip(')')})"
                if key and key not in seen:
                    seen.add(key)
                    lines[key] += int(samples)
    if not total:
        print(f"\nprofile {path}: no ehr.push samples (py-spy needs ptrace permission)")
        return
    print(
        f"\nworker profile during the throughput load (py-spy --idle, {total} samples of "
        f"ehr.push threads): share of the threads' time under each line, inclusive"
    )
    for key, count in lines.most_common(top):
        print(f"  {count / total:>6.1%}  {key}")


# ============================================================================================
# Report


def dist(values: list[float]) -> str:
    """``p50 / p99 / max`` of sorted values."""
    if not values:
        return "-"
    return (
        f"{fmt_ms(percentile(values, 50))} / {fmt_ms(percentile(values, 99))} / "
        f"{fmt_ms(values[-1])}"
    )


def print_table(phases: list[Phase]) -> None:
    """One row per phase."""
    head = (
        f"{'phase':<12}{'mode':>8}{'offered':>9}{'accepted':>9}{'app rep/s':>10}"
        f"{'EHR res/s':>10}{'to drain':>10}{'drain s':>8}{'lag p50 ms':>11}{'lag p99 ms':>11}"
        f"{'lag max ms':>11}"
    )
    print()
    print(head)
    print("-" * len(head))
    for p in phases:
        drained = p.drained_at if p.drained_at is not None else (p.writes[-1] if p.writes else 0)
        to_drain = p.ehr_rate(p.start, drained + 1e-6)
        print(
            f"{p.name:<12}{'single' if p.spec.batch == 1 else f'b{p.spec.batch}':>8}"
            f"{p.offered:>9}{len(p.accepted):>9}{p.app_rate():>10.1f}"
            f"{p.ehr_rate(p.start, p.end):>10.1f}{to_drain:>10.1f}"
            f"{(drained - p.end) if p.drained_at is not None else float('nan'):>8.1f}"
            f"{fmt_ms(percentile(p.lags, 50)):>11}{fmt_ms(percentile(p.lags, 99)):>11}"
            f"{fmt_ms(p.lags[-1] if p.lags else None):>11}"
        )
    print("-" * len(head))
    print(
        "offered / app rep/s: reports/s the app side offered / got answered 201; EHR res/s: "
        "Observation + QuestionnaireResponse + Provenance stored in the EHR per second while the "
        "app posted; to drain: the same from the load's start until all were stored; drain s: "
        "from the last 201 until all were stored; lag: 201 answer -> Observation stored in EHR"
    )
    for p in phases:
        not_ok = {c: n for c, n in p.status.items() if c != "201"}
        if not_ok or p.errors:
            print(f"  !!!  {p.name}: non-201 answers {not_ok}, client errors {p.errors}")


def print_throttle(phase: Phase, retries: int) -> None:
    """The throttle phase, period by period."""
    t = phase.throttle
    if not t.get("end"):
        print(f"\n{phase.name}: the throttle did not run")
        return
    start, end = float(t["start"]), float(t["end"])
    periods = (
        ("healthy", phase.start, start),
        (f"429 on {t['share']:.0%}", start, end),
        ("healthy again", end, phase.end),
    )
    print(
        f"\n{phase.name}: 429 (Retry-After 1) on {t['served_429']} of {t['posts']} transaction "
        f"POSTs during {end - start:.1f} s; careloop retried ehr.push {retries} times in the run"
    )
    print(f"  {'period':<16}{'s':>6}{'reports':>9}{'EHR res/s':>11}   lag p50 / p99 / max ms")
    for label, a, b in periods:
        lags = sorted(
            (phase.stored[rid] - answered) * 1000
            for rid, _, answered in phase.accepted
            if a <= answered < b and rid in phase.stored
        )
        reports = sum(1 for _, _, answered in phase.accepted if a <= answered < b)
        print(f"  {label:<16}{b - a:>6.1f}{reports:>9}{phase.ehr_rate(a, b):>11.1f}   {dist(lags)}")
    tail = phase.drained_at or phase.end
    print(f"  {'drain':<16}{tail - phase.end:>6.1f}{0:>9}{phase.ehr_rate(phase.end, tail):>11.1f}")


def print_breakdown(phase: Phase) -> None:
    """Each stage's p50 / p99 / max over the phase's reports."""
    if not phase.marks:
        return
    print(f"\nwhere the time goes, {phase.name} ({len(phase.marks)} reports), ms")
    print(f"  {'stage':<44}{'p50':>8}{'p99':>8}{'max':>8}{'mean':>8}")
    rows = (*STAGES, ("= lag (201 -> stored in the EHR)", "answered", "ehr"), *EXTRA_STAGES)
    for label, start, end in rows:
        values = sorted(v for m in phase.marks if (v := stage_ms(m, start, end)) is not None)
        if not values:
            continue
        mean = sum(values) / len(values)
        print(
            f"  {label:<44}{fmt_ms(percentile(values, 50)):>8}"
            f"{fmt_ms(percentile(values, 99)):>8}{fmt_ms(values[-1]):>8}{fmt_ms(mean):>8}"
        )


def print_cpu(phases: list[Phase]) -> None:
    """Cores used by each group during each phase's load."""
    groups = ["api", "worker", "beat", "ehr", "load", "postgres", "broker", "other", "machine"]
    print(
        f"\nCPU while the app posted, in cores of {os.cpu_count()} (ehr: the test EHR child; "
        "load: the app-side client; other: outside this benchmark)"
    )
    print(f"  {'phase':<12}" + "".join(f"{g:>9}" for g in groups))
    for p in phases:
        print(f"  {p.name:<12}" + "".join(f"{p.cpu.get(g, 0.0):>9.2f}" for g in groups))


# ============================================================================================
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Benchmark careloop's EHR sync: reports -> FHIR transactions in the EHR.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--patients", type=int, default=1000, help="EHR patients (p-<n>)")
    parser.add_argument("--lag-rate", type=float, default=20.0, help="lag phase: reports/s")
    parser.add_argument("--lag-seconds", type=float, default=15.0, help="lag phase: duration")
    parser.add_argument(
        "--tp-rate", type=float, default=250.0, help="throughput phase: reports/s (0: max)"
    )
    parser.add_argument("--tp-seconds", type=float, default=15.0, help="throughput: duration")
    parser.add_argument("--batch-size", type=int, default=50, help="throughput: reports/batch")
    parser.add_argument("--clients", type=int, default=4, help="concurrent app-side clients")
    parser.add_argument("--throttle-rate", type=float, default=8.0, help="throttle: reports/s")
    parser.add_argument(
        "--throttle-seconds", type=float, default=10.0, help="throttle: each of 3 periods"
    )
    parser.add_argument("--throttle-share", type=float, default=0.25, help="share of POSTs: 429")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="max s to drain")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/9", help="Redis broker (a db number)"
    )
    parser.add_argument("--api-workers", type=int, default=2, help="careloop serve --workers")
    parser.add_argument(
        "--worker-concurrency", type=int, default=4, help="careloop worker --concurrency"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: short phases")
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs in DIR")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy the worker in the throughput phase"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="CARELOOP_X=VALUE",
        help="extra careloop setting for all its processes (repeatable)",
    )
    parser.add_argument("--ehr-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.patients = min(args.patients, 300)
        args.lag_seconds = min(args.lag_seconds, 5.0)
        args.tp_seconds = min(args.tp_seconds, 6.0)
        args.throttle_seconds = min(args.throttle_seconds, 4.0)
    if args.patients < args.batch_size:
        parser.error("--patients must be at least --batch-size (one report per patient a batch)")
    if min(args.lag_rate, args.throttle_rate, args.lag_seconds, args.tp_seconds) <= 0:
        parser.error("rates and durations must be positive")
    if not 0 < args.throttle_share < 1:
        parser.error("--throttle-share is a fraction between 0 and 1")
    for item in args.env:
        if "=" not in item or not item.startswith("CARELOOP_"):
            parser.error(f"--env takes CARELOOP_NAME=VALUE, not {item!r}")
    return args


def check_ehr(dump: dict[str, Any], phases: list[Phase]) -> list[str]:
    """Problems: EHR contents vs the reports accepted (missing, duplicated, unexpected)."""
    problems = []
    accepted = {a[0] for p in phases for a in p.accepted}
    resources = dump["resources"]
    for rtype, sid in (("Observation", OBS_SID), ("QuestionnaireResponse", QR_SID)):
        idents = Counter(
            ident.split("|", 1)[1] for _, ident, _, _ in resources[rtype] if ident.startswith(sid)
        )
        dupes = {k: n for k, n in idents.items() if n > 1}
        missing = accepted - set(idents)
        extra = set(idents) - accepted
        if dupes:
            problems.append(f"{rtype}: {len(dupes)} identifiers stored more than once")
        if missing:
            problems.append(
                f"{rtype}: {len(missing)} accepted reports not in the EHR"
                + ("" if all(p.drained_at for p in phases) else " (drain timed out: queued)")
            )
        if extra:
            problems.append(f"{rtype}: {len(extra)} not from an accepted report")
    if len(resources["Provenance"]) != len(accepted):
        problems.append(f"Provenance: {len(resources['Provenance'])} for {len(accepted)} reports")
    return problems


def db_health(pg_url: str) -> dict[str, Any]:
    """Refused writes, dead tasks, ehr_write states, the connection's circuit."""
    with psycopg.connect(pg_url) as conn:
        states: dict[Any, Any] = dict(
            conn.execute("SELECT state, count(*) FROM ehr_write GROUP BY state").fetchall()
        )
        failures = conn.execute("SELECT count(*) FROM ehr_failure").fetchone()
        dead = conn.execute("SELECT task, count(*) FROM dead_task GROUP BY task").fetchall()
        undispatched = conn.execute(
            # Open and never published (a batch may complete a push before the relay sends it).
            "SELECT count(*) FROM outbox_message WHERE dispatched_at IS NULL"
            " AND completed_at IS NULL"
        ).fetchone()
        conn_row = conn.execute(
            "SELECT consecutive_failures, circuit_open_until, last_error FROM ehr_connection"
        ).fetchone()
        links: dict[Any, Any] = dict(
            conn.execute("SELECT state, count(*) FROM patient_link GROUP BY state").fetchall()
        )
    return {
        "ehr_write": {str(k): int(v) for k, v in states.items()},
        "ehr_failure": int(failures[0]) if failures else 0,
        "dead_task": {str(k): int(v) for k, v in dead},
        "outbox_undispatched": int(undispatched[0]) if undispatched else 0,
        "connection": conn_row,
        "patient_link": {str(k): int(v) for k, v in links.items()},
    }


def run(args: argparse.Namespace, logs: Path) -> int:
    """Every phase on one stack; the exit status."""
    extra_env = dict(item.split("=", 1) for item in args.env)
    phases: list[Phase] = []
    with careloop_stack(
        "ehrbench", args.redis_url, logs, args.api_workers, args.worker_concurrency, extra_env
    ) as (stack, env, pg_url):
        ehr = EhrChild(logs)
        try:
            result = run_phases(args, stack, env, pg_url, ehr, phases)
        finally:
            ehr.stop()
    return result


def run_phases(
    args: argparse.Namespace,
    stack: CareloopStack,
    env: dict[str, str],
    pg_url: str,
    ehr: EhrChild,
    phases: list[Phase],
) -> int:
    """Connect careloop to the EHR, run the phases, check and print; the exit status."""
    jwks_url = f"{stack.api.url}/.well-known/jwks.json"
    ehr.call("register", client_id=EHR_CLIENT, scopes=EHR_SCOPES, jwks_url=jwks_url)
    run_cli(
        env,
        *("ehr", "add", "hospital", "--fhir-base-url", ehr.base_url, "--client-id", EHR_CLIENT),
        *("--scope", EHR_SCOPES, "--tenant", "default"),
    )
    ehr.call("seed_patients", values=[f"p-{n}" for n in range(args.patients)], timeout_s=120)
    client_id, client_secret = create_client(env)
    token = fetch_token(stack.api.url, client_id, client_secret)
    base = iso(datetime.now(UTC) - timedelta(days=1))
    roots = {name: s.proc.pid for name, s in stack.servers().items() if s.proc is not None}
    roots["ehr"] = ehr.pid

    def spec(i: int, batch: int, rate: float, seconds: float) -> LoadSpec:
        return LoadSpec(
            stack.api.url,
            token,
            batch,
            rate,
            args.clients,
            seconds,
            i * PHASE_SPAN,
            args.patients,
            base,
        )

    warm_batch = min(100, args.patients)
    # 10 batches/s, as many as it takes for one report per patient
    warm_seconds = math.ceil(args.patients / warm_batch) / 10 - 0.001
    plan = [
        Phase("warm-up", spec(0, warm_batch, 10.0 * warm_batch, warm_seconds)),
        Phase("lag", spec(1, 1, args.lag_rate, args.lag_seconds)),
        Phase("throughput", spec(2, args.batch_size, args.tp_rate, args.tp_seconds)),
        Phase("throttle", spec(3, 1, args.throttle_rate, 3 * args.throttle_seconds)),
    ]
    expected = 0
    for phase in plan:
        throttle = None
        if phase.name == "throttle":
            throttle = (args.throttle_share, args.throttle_seconds, "1")
        profile = None
        if phase.name == "throughput" and args.profile and stack.worker.proc is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            profile = (stack.worker.proc.pid, args.profile / "worker-throughput.txt")
        expected = run_phase(
            phase, pg_url, expected, roots, args.drain_timeout, ehr, throttle, profile
        )
        phases.append(phase)
        if phase.drained_at is None:
            break

    time.sleep(0.5)
    dump = ehr.call("dump", timeout_s=300)
    stored: dict[str, float] = {}
    for _, ident, at, _ in dump["resources"]["Observation"]:
        if ident.startswith(OBS_SID + "|"):
            stored.setdefault(ident.split("|", 1)[1], at)
    all_writes = sorted(at for rtype in SYNCED for _, _, at, _ in dump["resources"][rtype])
    task_log = TaskLog.parse(stack.worker.log_path)
    for i, phase in enumerate(phases):
        phase.stored = stored
        nxt = phases[i + 1].start if i + 1 < len(phases) else float("inf")
        phase.writes = [t for t in all_writes if phase.start <= t < nxt]
        phase.lags = sorted(
            (stored[rid] - answered) * 1000 for rid, _, answered in phase.accepted if rid in stored
        )
        if phase.name in ("lag", "throughput"):
            phase.marks = report_marks(pg_url, phase, stored, task_log)
    throttled = [p for p in phases if p.name == "throttle"]
    if throttled and dump["throttles"]:
        throttled[0].throttle = dump["throttles"][0]

    print_table(phases)
    for p in phases:
        if p.name in ("throughput", "throttle"):
            print(f"\n{p.name}: EHR resources stored per second from the load's start")
            print("  " + " ".join(str(n) for n in p.per_second()))
    if throttled:
        print_throttle(throttled[0], task_log.retries.get("ehr.push", 0))
    for p in phases:
        print_breakdown(p)
    timings = dump["timings"]
    print(
        f"\nEHR handling time per request (in the EHR, ms p50 / p99 / max): transaction "
        f"{dist(timings['transaction'])} ({len(timings['transaction'])}), other "
        f"{dist(timings['other'])} ({len(timings['other'])}); tokens issued {dump['tokens']}"
    )
    runtimes = sorted(task_log.runtimes.get("ehr.push", []))
    print(f"ehr.push run time (worker log, ms p50 / p99 / max): {dist(runtimes)} ({len(runtimes)})")
    print(f"EHR requests (method path:status): {dict(sorted(dump['requests'].items()))}")
    print_cpu(phases)
    if args.profile:
        print_profile(args.profile / "worker-throughput.txt")

    problems = check_ehr(dump, phases)
    health = db_health(pg_url)
    accepted = sum(len(p.accepted) for p in phases)
    counts = {t: len(dump["resources"][t]) for t in SYNCED}
    rewrites = sum(1 for t in SYNCED for *_, v in dump["resources"][t] if v != "1")
    print(
        f"\nchecks: {accepted} reports accepted; EHR holds {counts}; {rewrites} resources "
        f"rewritten (versionId > 1); careloop: {health}"
    )
    if health["ehr_failure"] or health["dead_task"] or health["ehr_write"].get("failed"):
        problems.append("careloop recorded refused writes or dead tasks")
    logged = stack.worker.log_lines(r"\bERROR\b|^Traceback") + stack.api.log_lines(
        r"\bERROR\b|^Traceback"
    )
    for line in logged[:5]:
        print(f"  !!!  {line[:300]}")
    for problem in problems:
        print(f"  !!!  {problem}")

    tp = next((p for p in phases if p.name == "throughput"), None)
    lag = next((p for p in phases if p.name == "lag"), None)
    tp_rate = tp.ehr_rate(tp.start, tp.end) if tp else 0.0
    lag_p99 = percentile(lag.lags, 99) if lag else float("inf")
    throttle_ok = bool(throttled) and throttled[0].drained_at is not None and not problems
    print(
        f"\ngoals: >= {GOAL_RESOURCES_S:g} resources/s into a healthy EHR: {tp_rate:.0f} "
        f"{'met' if tp_rate >= GOAL_RESOURCES_S else 'NOT met'}; p99 lag < "
        f"{GOAL_P99_LAG_MS:g} ms: {fmt_ms(lag_p99)} ms "
        f"{'met' if lag_p99 < GOAL_P99_LAG_MS else 'NOT met'}; throttled EHR: back-pressure, "
        f"nothing failed, lost or duplicated: {'met' if throttle_ok else 'NOT met'}"
    )
    return 0 if not problems and len(phases) == len(plan) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every report reached the EHR exactly once."""
    args = parse_args(argv)
    if args.ehr_child:
        return ehr_child_main()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    print(
        f"careloop EHR sync benchmark: PostgreSQL {pg_version()}, Redis; API {args.api_workers} "
        f"workers, worker --concurrency {args.worker_concurrency} --pool threads, beat; test EHR "
        f"in a child process with {args.patients} patients; {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.2f} at start; loopback {HOST}"
    )
    if args.env:
        print(f"careloop settings: {' '.join(args.env)}")
    with tempfile.TemporaryDirectory(prefix="careloop-ehrbench-") as tmp:
        logs = Path(tmp)
        try:
            return run(args, logs)
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
        print("interrupted; processes stopped, queue deleted, database dropped", file=sys.stderr)
        sys.exit(130)
