"""Alert latency benchmark: from the POST of a critical report to the signed webhook.

Runs careloop as real processes on a fresh PostgreSQL database (one per broker): the API
(``careloop serve --workers 2``; with a broker configured it starts no embedded worker), a Celery
worker (``careloop worker --concurrency 4 --pool threads``) and the scheduler (``careloop beat``),
all with the same environment and a queue of their own. A receiver in this process (threaded
``http.server`` on loopback) is the tenant's on-call webhook (``careloop notify add-webhook``); it
verifies every Standard Webhooks signature and notes when each alert arrives.

A probe is a PHQ-9 report with item 9 = 1 (``answers: [0,0,0,0,0,0,0,0,1]``): it opens a critical
alert, which is never suppressed. Every probe is for a new synthetic patient, with its own
effective time in the past, so each opens its own alert; a probe is matched to its webhook by
the ``patient`` reference in the POST answer and in the webhook body. Its latency runs from just
before the POST is sent to the webhook's arrival. A probe whose webhook has not arrived
``--lost-after`` seconds after the last probe was sent is counted lost.

Per broker (Redis and RabbitMQ), two configurations:

* ``alone``: only the probes;
* ``load``: the probes while a separate process POSTs routine reports (PHQ-9 with low scores and
  item 9 = 0: each is evaluated but opens no alert) at ``--background-rate`` reports/s from
  ``--background-clients`` concurrent clients.

Afterwards each probe's latency is split into stages from the database and the worker's log
(``outbox_message.dispatched_at``, the task's start in the worker log, ``alert.opened_at``, the
deliver task's outbox row and start, the webhook's arrival). The databases are dropped, the
processes stopped and the broker queues deleted at the end, also on error, Ctrl-C or SIGTERM.

    .venv/bin/python bench/alert_latency.py                    # 100 probes per configuration
    .venv/bin/python bench/alert_latency.py --quick            # smoke test: 20 probes each
    .venv/bin/python bench/alert_latency.py --brokers redis --background-rate 100
    .venv/bin/python bench/alert_latency.py --env CARELOOP_RELAY_AFTER_COMMIT=false
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.synchronize
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from common import (
    HOST,
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

PATIENT_SYSTEM = "https://bench.careloop.example/patients"
PROBE_ANSWERS = [0, 0, 0, 0, 0, 0, 0, 0, 1]
GOAL_P99_MS = 250.0
BROKERS = ("redis", "rabbitmq")
REPORTS_PATH = "/v1/symptom-reports"


# --------------------------------------------------------------------------------------------
# Reports


def probe_body(patient_value: str, effective: str) -> dict[str, Any]:
    """A PHQ-9 with item 9 = 1: a critical alert for a patient seen for the first time."""
    return {
        "patient": {"system": PATIENT_SYSTEM, "value": patient_value},
        "instrument": "phq-9",
        "answers": PROBE_ANSWERS,
        "effective": effective,
    }


def routine_body(n: int, run: str, patients: int, base: datetime) -> dict[str, Any]:
    """Routine report ``n``: a PHQ-9 totalling 1 with item 9 = 0 (no rule fires; a rise of 5
    from baseline is impossible), patient ``n % patients``, effective ``n`` ms before ``base``."""
    answers = [1 if i == n % 8 else 0 for i in range(8)] + [0]
    return {
        "patient": {"system": PATIENT_SYSTEM, "value": f"bg-{run}-{n % patients:05d}"},
        "instrument": "phq-9",
        "answers": answers,
        "effective": iso(base - timedelta(milliseconds=n)),
    }


# --------------------------------------------------------------------------------------------
# The webhook receiver


@dataclass(frozen=True)
class Arrival:
    """One verified webhook."""

    at: float
    """Wall-clock time (``time.time()``) when the request's headers had been read."""
    webhook_id: str
    patient: str
    event: str
    severity: str


class Receiver:
    """A threaded HTTP server on loopback verifying Standard Webhooks signatures."""

    def __init__(self, secret: str) -> None:
        from careloop.integrations.channels import WebhookVerificationError, verify_webhook

        self.secret = secret
        self.rejected = 0
        self.arrivals: dict[str, list[Arrival]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                at = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    verify_webhook(receiver.secret, dict(self.headers.items()), body)
                    data = orjson.loads(body)
                except (WebhookVerificationError, orjson.JSONDecodeError):
                    with receiver._lock:
                        receiver.rejected += 1
                    self.send_response(400)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                arrival = Arrival(
                    at,
                    self.headers["webhook-id"],
                    str(data.get("patient", "")),
                    str(data.get("type", "")),
                    str(data.get("severity", "")),
                )
                with receiver._lock:
                    receiver.arrivals.setdefault(arrival.patient, []).append(arrival)
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

    def first_arrival(self, patient: str) -> float | None:
        """When the first webhook about ``patient`` arrived."""
        with self._lock:
            found = self.arrivals.get(patient)
            return found[0].at if found else None

    def count(self) -> int:
        """Webhooks received (verified)."""
        with self._lock:
            return sum(len(v) for v in self.arrivals.values())

    def duplicates(self) -> int:
        """Webhooks received more than once with the same webhook-id."""
        with self._lock:
            ids = Counter(a.webhook_id for v in self.arrivals.values() for a in v)
        return sum(n - 1 for n in ids.values() if n > 1)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


# --------------------------------------------------------------------------------------------
# Probes


@dataclass
class Probe:
    """One critical report and what became of it."""

    index: int
    patient_value: str
    effective: str
    sent_at: float = 0.0
    answered_at: float | None = None
    status: int | None = None
    patient: str | None = None
    """``Patient/{id}`` from the POST answer."""
    observation: str | None = None
    """The Observation id from the POST answer."""
    error: str | None = None
    arrived_at: float | None = None

    @property
    def latency_ms(self) -> float | None:
        """POST sent -> webhook arrived."""
        if self.arrived_at is None:
            return None
        return (self.arrived_at - self.sent_at) * 1000

    @property
    def post_ms(self) -> float | None:
        """POST sent -> answer received."""
        if self.answered_at is None:
            return None
        return (self.answered_at - self.sent_at) * 1000


def make_probes(run: str, label: str, count: int, base: datetime) -> list[Probe]:
    """``count`` probes for new patients, effective one second apart before ``base``."""
    return [
        Probe(i, f"probe-{run}-{label}-{i:04d}", iso(base - timedelta(seconds=count - i)))
        for i in range(count)
    ]


def send_probe(http: httpx.Client, url: str, token: str, probe: Probe) -> None:
    """POST one probe and note the answer."""
    content = orjson.dumps(probe_body(probe.patient_value, probe.effective))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    probe.sent_at = time.time()
    try:
        response = http.post(url, content=content, headers=headers)
    except httpx.HTTPError as exc:
        probe.error = type(exc).__name__
        return
    probe.answered_at = time.time()
    probe.status = response.status_code
    if response.status_code != 201:
        probe.error = f"HTTP {response.status_code}: {response.text[:200]}"
        return
    data = response.json()
    probe.patient = str(data["patient"])
    for reference in data.get("resources", []):
        if reference.startswith("Observation/"):
            probe.observation = reference.removeprefix("Observation/")


def run_probes(
    probes: list[Probe],
    url: str,
    token: str,
    receiver: Receiver,
    interval_s: float,
    lost_after_s: float,
) -> tuple[float, float]:
    """Send ``probes`` every ``interval_s`` and wait for their webhooks; the window's bounds.

    Probes are sent on schedule from a small thread pool, so a slow answer does not delay the
    next probe. Waiting ends when every answered probe's webhook arrived, or ``lost_after_s``
    after the last probe was sent.
    """
    window_start = time.time()
    with (
        httpx.Client(timeout=30.0) as http,
        ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe") as pool,
    ):
        start = time.monotonic()
        futures = []
        for i, probe in enumerate(probes):
            delay = start + i * interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send_probe, http, url, token, probe))
        for future in futures:
            future.result()
    deadline = max(p.sent_at for p in probes) + lost_after_s
    while True:
        waiting = 0
        for probe in probes:
            if probe.patient is not None and probe.arrived_at is None:
                probe.arrived_at = receiver.first_arrival(probe.patient)
                waiting += probe.arrived_at is None
        if not waiting or time.time() > deadline:
            break
        time.sleep(0.02)
    return window_start, time.time()


# --------------------------------------------------------------------------------------------
# Background load (in a process of its own, so it does not share this process's GIL with the
# receiver and the probes)


async def _background(
    url: str,
    token: str,
    rate: float,
    clients: int,
    run: str,
    patients: int,
    stop: multiprocessing.synchronize.Event,
    max_seconds: float,
) -> dict[str, Any]:
    base = datetime.now(UTC) - timedelta(days=1)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    tickets = iter(range(sys.maxsize))
    ok_at: list[float] = []
    latencies: list[float] = []
    status: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    start = time.monotonic()
    hard_stop = start + max_seconds

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set() and time.monotonic() < hard_stop:
            n = next(tickets)
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            content = orjson.dumps(routine_body(n, run, patients, base))
            t0 = time.perf_counter()
            try:
                response = await http.post(url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            status[response.status_code] += 1
            if response.status_code == 201:
                ok_at.append(time.time())

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return {
        "ok_at": ok_at,
        "latencies_ms": sorted(latencies),
        "status": dict(status),
        "errors": dict(errors),
    }


def background_main(
    url: str,
    token: str,
    rate: float,
    clients: int,
    run: str,
    patients: int,
    stop: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue[dict[str, Any]],
    max_seconds: float,
) -> None:
    """Entry point of the background load process: POST routine reports until ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    result = asyncio.run(_background(url, token, rate, clients, run, patients, stop, max_seconds))
    out.put(result)


@dataclass
class Background:
    """What the background load achieved."""

    ok_at: list[float]
    latencies_ms: list[float]
    status: dict[int, int]
    errors: dict[str, int]

    def rate(self, start: float, end: float) -> float:
        """Reports answered 201 per second between ``start`` and ``end`` (wall clock)."""
        if end <= start:
            return 0.0
        return sum(1 for t in self.ok_at if start <= t <= end) / (end - start)


class BackgroundLoad:
    """The background load process."""

    def __init__(
        self, url: str, token: str, rate: float, clients: int, run: str, max_seconds: float
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._out: multiprocessing.Queue[dict[str, Any]] = ctx.Queue()
        self._proc = ctx.Process(
            target=background_main,
            args=(url, token, rate, clients, run, 1000, self._stop, self._out, max_seconds),
            name="alertbench-background",
            daemon=True,
        )
        self._proc.start()

    def finish(self) -> Background:
        """Stop the load and collect its figures."""
        self._stop.set()
        data = self._out.get(timeout=90)
        self._proc.join(15)
        return Background(
            ok_at=data["ok_at"],
            latencies_ms=data["latencies_ms"],
            status={int(k): int(v) for k, v in data["status"].items()},
            errors=data["errors"],
        )

    def kill(self) -> None:
        """Make sure the process is gone."""
        self._stop.set()
        if self._proc.is_alive():
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


# --------------------------------------------------------------------------------------------
# CPU


# --------------------------------------------------------------------------------------------
# Latency breakdown (database rows and the worker's log)

STAGES = (
    ("POST -> evaluate published", "sent", "ev_pub"),
    ("published -> evaluate starts", "ev_pub", "ev_start"),
    ("evaluate starts -> alert opened", "ev_start", "alert"),
    ("alert opened -> deliver published", "alert", "dl_pub"),
    ("published -> deliver starts", "dl_pub", "dl_start"),
    ("deliver starts -> webhook arrives", "dl_start", "arrived"),
)
"""Consecutive stages (they add up to the latency): label, from mark, to mark."""
EXTRA_STAGES = (
    ("POST answered (API latency)", "sent", "answered"),
    ("evaluate task run time", "ev_start", "ev_end"),
    ("deliver task run time", "dl_start", "dl_end"),
    ("webhook arrives -> attempt recorded", "arrived", "attempt"),
)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def probe_marks(pg_url: str, probes: list[Probe], log: TaskLog) -> list[dict[str, float]]:
    """Every delivered probe's milestones (wall-clock seconds), by mark name."""
    by_obs = {p.observation: p for p in probes if p.observation and p.arrived_at is not None}
    if not by_obs:
        return []
    obs_ids = list(by_obs)
    with psycopg.connect(pg_url) as conn:
        evaluate = {
            row[0]: (f"outbox-{row[1]}", row[2])
            for row in conn.execute(
                "SELECT payload::jsonb->>'observation_id', id, dispatched_at FROM outbox_message "
                "WHERE task = 'reading.created' "
                "AND payload::jsonb->>'observation_id' = ANY(%s)",
                (obs_ids,),
            )
        }
        alerts = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT observation_id, id, opened_at FROM alert WHERE observation_id = ANY(%s)",
                (obs_ids,),
            )
        }
        alert_ids = [a[0] for a in alerts.values()]
        notifications = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT alert_id, id FROM notification WHERE alert_id = ANY(%s) "
                "AND recipient = 'oncall'",
                (alert_ids,),
            )
        }
        notification_ids = list(notifications.values())
        deliver = {
            row[0]: (f"outbox-{row[1]}", row[2])
            for row in conn.execute(
                "SELECT payload::jsonb->>'notification_id', id, dispatched_at FROM outbox_message "
                "WHERE task = 'notification.requested' "
                "AND payload::jsonb->>'notification_id' = ANY(%s)",
                (notification_ids,),
            )
        }
        attempts = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT notification_id, min(at) FROM delivery_attempt "
                "WHERE notification_id = ANY(%s) GROUP BY notification_id",
                (notification_ids,),
            )
        }
    marks_list = []
    for obs, probe in by_obs.items():
        assert probe.arrived_at is not None and probe.answered_at is not None
        marks: dict[str, float | None] = {
            "sent": probe.sent_at,
            "answered": probe.answered_at,
            "arrived": probe.arrived_at,
        }
        ev_task, ev_pub = evaluate.get(obs, ("", None))
        marks["ev_pub"] = _epoch(ev_pub)
        marks["ev_start"] = log.started.get(ev_task, log.received.get(ev_task))
        marks["ev_end"] = log.finished.get(ev_task)
        alert_id, opened = alerts.get(obs, ("", None))
        marks["alert"] = _epoch(opened)
        notification = notifications.get(alert_id, "")
        dl_task, dl_pub = deliver.get(notification, ("", None))
        marks["dl_pub"] = _epoch(dl_pub)
        marks["dl_start"] = log.started.get(dl_task, log.received.get(dl_task))
        marks["dl_end"] = log.finished.get(dl_task)
        marks["attempt"] = _epoch(attempts.get(notification))
        marks_list.append({k: v for k, v in marks.items() if v is not None})
    return marks_list


# --------------------------------------------------------------------------------------------
# One configuration


@dataclass
class ConfigResult:
    """What one configuration measured."""

    broker: str
    loaded: bool
    probes: list[Probe]
    window: tuple[float, float] = (0.0, 0.0)
    background: Background | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    backlog: tuple[int, int] = (0, 0)
    """Evaluations waiting at the end of the window: (not yet published, published)."""
    marks: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``redis alone``, ``rabbitmq + load`` ..."""
        return f"{self.broker} {'+ load' if self.loaded else 'alone'}"

    @property
    def latencies(self) -> list[float]:
        """Delivered probes' latencies in ms, sorted."""
        return sorted(p.latency_ms for p in self.probes if p.latency_ms is not None)

    @property
    def lost(self) -> list[Probe]:
        """Probes answered 201 whose webhook never arrived."""
        return [p for p in self.probes if p.patient is not None and p.arrived_at is None]

    @property
    def failed(self) -> list[Probe]:
        """Probes not answered 201."""
        return [p for p in self.probes if p.patient is None]

    @property
    def background_rate(self) -> float:
        """Background reports/s achieved during the probe window."""
        return self.background.rate(*self.window) if self.background else 0.0

    @property
    def goal_met(self) -> bool:
        """p99 under the goal and nothing lost."""
        lat = self.latencies
        return bool(lat) and not self.lost and not self.failed and percentile(lat, 99) < GOAL_P99_MS


def evaluation_backlog(pg_url: str) -> tuple[int, int]:
    """Evaluations waiting: (outbox rows not yet published, published but not yet evaluated)."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE dispatched_at IS NULL), count(*) "
            "FROM outbox_message WHERE task = 'reading.created'"
        ).fetchone()
        done = conn.execute("SELECT count(*) FROM processed_reading").fetchone()
    assert row is not None and done is not None
    undispatched, total = int(row[0]), int(row[1])
    return undispatched, max(0, total - undispatched - int(done[0]))


def wait_drained(pg_url: str, timeout_s: float) -> tuple[int, int]:
    """Wait (bounded) until no evaluation is waiting; what is left."""
    deadline = time.monotonic() + timeout_s
    backlog = evaluation_backlog(pg_url)
    while sum(backlog) and time.monotonic() < deadline:
        time.sleep(0.5)
        backlog = evaluation_backlog(pg_url)
    return backlog


# --------------------------------------------------------------------------------------------
# One broker: processes, configurations, clean-up


def run_broker(
    broker: str, broker_url: str, args: argparse.Namespace, logs: Path
) -> list[ConfigResult]:
    """Both configurations on one broker."""
    from careloop.integrations.channels import generate_webhook_secret

    receiver = Receiver(generate_webhook_secret())
    run = secrets.token_hex(3)
    results: list[ConfigResult] = []
    try:
        with careloop_stack(
            broker,
            broker_url,
            logs,
            api_workers=args.api_workers,
            worker_concurrency=args.worker_concurrency,
            extra_env=dict(item.split("=", 1) for item in args.env),
        ) as (stack, env, pg_url):
            run_cli(env, "notify", "add-webhook", receiver.url, "--secret", receiver.secret)
            client_id, client_secret = create_client(env)
            token = fetch_token(stack.api.url, client_id, client_secret)
            url = stack.api.url + REPORTS_PATH
            base = datetime.now(UTC) - timedelta(hours=1)

            # warm-up: connections to the database and the broker in every process
            warm = make_probes(run, f"{broker}-warm", args.warmup_probes, base)
            run_probes(warm, url, token, receiver, 0.2, 30.0)
            if any(p.arrived_at is None for p in warm):
                errors = {p.error for p in warm if p.error}
                raise RuntimeError(
                    f"{broker}: warm-up probes got no webhook (errors: {errors or 'none'}); "
                    f"worker log:\n{stack.worker.log_tail()}"
                )

            for loaded in (False, True):
                label = f"{broker}-{'load' if loaded else 'alone'}"
                probes = make_probes(
                    run, label, args.probes, base - timedelta(minutes=10 * (1 + loaded))
                )
                result = ConfigResult(broker, loaded, probes)
                load: BackgroundLoad | None = None
                try:
                    if loaded:
                        max_s = args.settle + args.probes * args.interval + args.lost_after + 60
                        load = BackgroundLoad(
                            url, token, args.background_rate, args.background_clients, run, max_s
                        )
                        print(
                            f"{result.name}: {args.background_rate:g} routine reports/s from "
                            f"{args.background_clients} clients, {args.settle:g} s to settle ..."
                        )
                        time.sleep(args.settle)
                    print(f"{result.name}: {args.probes} probes every {args.interval * 1000:g} ms")
                    before = cpu_snapshot()
                    result.window = run_probes(
                        probes, url, token, receiver, args.interval, args.lost_after
                    )
                    roots = {
                        name: server.proc.pid
                        for name, server in stack.servers().items()
                        if server.proc is not None
                    }
                    result.cpu = cpu_by_group(before, cpu_snapshot(), roots)
                    result.backlog = evaluation_backlog(pg_url)
                    if load is not None:
                        result.background = load.finish()
                finally:
                    if load is not None:
                        load.kill()
                results.append(result)
                left = wait_drained(pg_url, 60)
                if sum(left):
                    print(f"  !!!  {broker}: {sum(left)} evaluations still waiting after 60 s")
            time.sleep(0.5)  # the last attempts' rows
            task_log = TaskLog.parse(stack.worker.log_path)
            for result in results:
                result.marks = probe_marks(pg_url, result.probes, task_log)
            if task_log.retries:
                print(f"  !!!  {broker}: task retries in the worker log {dict(task_log.retries)}")
            logged = stack.worker.log_lines(r"\bERROR\b|^Traceback") + stack.api.log_lines(
                r"\bERROR\b|^Traceback"
            )
            for line in logged[:5]:
                print(f"  !!!  {broker}: {line[:300]}")
    finally:
        if receiver.rejected or receiver.duplicates():
            print(
                f"  !!!  {broker}: receiver rejected {receiver.rejected} webhooks, "
                f"{receiver.duplicates()} duplicates"
            )
        receiver.close()
    return results


# --------------------------------------------------------------------------------------------
# Report


def print_table(results: list[ConfigResult], args: argparse.Namespace) -> None:
    """The main figures, one row per configuration."""
    head = (
        f"{'config':<18}{'probes':>7}{'delivered':>10}{'lost':>6}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'POST p50':>10}{'bg rep/s':>10}{'eval backlog':>14}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        lat = r.latencies
        posts = sorted(p.post_ms for p in r.probes if p.post_ms is not None)
        bg = f"{r.background_rate:.1f}" if r.loaded else "-"
        print(
            f"{r.name:<18}{len(r.probes):>7}{len(lat):>10}{len(r.lost) + len(r.failed):>6}"
            f"{fmt_ms(percentile(lat, 50)):>9}{fmt_ms(percentile(lat, 99)):>9}"
            f"{fmt_ms(lat[-1] if lat else None):>9}{fmt_ms(percentile(posts, 50)):>10}{bg:>10}"
            f"{sum(r.backlog):>14}"
        )
    print("-" * len(head))
    print(
        "latency: POST sent -> signed webhook received; lost: no webhook within "
        f"{args.lost_after:g} s of the last probe (or POST not answered 201); POST p50: the "
        "probe's own POST; bg rep/s: routine reports answered 201 per second during the probe "
        "window; eval backlog: routine evaluations still waiting when the window ended"
    )
    for r in results:
        for probe in r.failed[:3]:
            print(f"  !!!  {r.name}: probe {probe.index} failed: {probe.error}")
        if r.lost:
            print(
                f"  !!!  {r.name}: {len(r.lost)} probes LOST (no webhook): "
                + ", ".join(str(p.patient) for p in r.lost[:5])
            )
        if r.background is not None:
            load = r.background
            not_ok = {c: n for c, n in load.status.items() if c != 201}
            print(
                f"  {r.name}: background POST p50 {fmt_ms(percentile(load.latencies_ms, 50))} ms, "
                f"p99 {fmt_ms(percentile(load.latencies_ms, 99))} ms"
                + (f", non-201 {not_ok}" if not_ok else "")
                + (f", errors {load.errors}" if load.errors else "")
            )
    loaded = [r for r in results if r.loaded]
    verdicts = ", ".join(
        f"{r.broker} p99 {fmt_ms(percentile(r.latencies, 99))} ms "
        f"{'met' if r.goal_met else 'NOT met'}"
        for r in loaded
    )
    print(f"\ngoal: p99 < {GOAL_P99_MS:g} ms under load, nothing lost: {verdicts or 'no load run'}")


def print_breakdown(results: list[ConfigResult]) -> None:
    """Where the time goes: each stage's p50 / p99 / max over the delivered probes."""
    for r in results:
        if not r.marks:
            print(f"\n{r.name}: no breakdown (no probe matched in the database)")
            continue
        print(f"\nbreakdown {r.name} ({len(r.marks)} probes), ms")
        print(f"  {'stage':<38}{'p50':>8}{'p99':>8}{'max':>8}{'mean':>8}")
        for label, start, end in (*STAGES, ("= total", "sent", "arrived"), *EXTRA_STAGES):
            values = sorted(v for m in r.marks if (v := stage_ms(m, start, end)) is not None)
            if not values:
                continue
            mean = sum(values) / len(values)
            print(
                f"  {label:<38}{fmt_ms(percentile(values, 50)):>8}"
                f"{fmt_ms(percentile(values, 99)):>8}{fmt_ms(values[-1]):>8}{fmt_ms(mean):>8}"
            )
        slowest = sorted(r.marks, key=lambda m: m["arrived"] - m["sent"])[-3:]
        print(
            "  slowest probes, stage by stage: "
            + " | ".join(s[0].split(" -> ")[-1] for s in STAGES)
        )
        for marks in reversed(slowest):
            parts = [fmt_ms(stage_ms(marks, s, e)) for _, s, e in STAGES]
            total = fmt_ms(stage_ms(marks, "sent", "arrived"))
            print(f"    total {total:>7}: " + " | ".join(parts))


def print_cpu(results: list[ConfigResult]) -> None:
    """Cores used by each group during each probe window."""
    groups = ["api", "worker", "beat", "postgres", "broker", "bench", "other", "machine"]
    print(
        f"\nCPU during the probe window, in cores of {os.cpu_count()} (other: processes outside "
        "this benchmark; machine: all)"
    )
    print(f"  {'config':<18}" + "".join(f"{g:>10}" for g in groups))
    for r in results:
        print(f"  {r.name:<18}" + "".join(f"{r.cpu.get(g, 0.0):>10.2f}" for g in groups))


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Benchmark careloop's alert latency: critical report POST -> signed webhook.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--probes", type=int, default=100, help="critical probes per config")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    parser.add_argument(
        "--background-rate", type=float, default=75.0, help="routine reports/s under load"
    )
    parser.add_argument(
        "--background-clients", type=int, default=4, help="concurrent background clients"
    )
    parser.add_argument(
        "--brokers", default=",".join(BROKERS), help="comma-separated: redis, rabbitmq"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/9", help="Redis broker (a db number)"
    )
    parser.add_argument(
        "--amqp-url", default="amqp://guest:guest@127.0.0.1:5672//", help="RabbitMQ broker"
    )
    parser.add_argument(
        "--lost-after", type=float, default=10.0, help="seconds after the last probe: lost"
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds of background load before probing"
    )
    parser.add_argument("--warmup-probes", type=int, default=3, help="uncounted first probes")
    parser.add_argument("--api-workers", type=int, default=2, help="careloop serve --workers")
    parser.add_argument(
        "--worker-concurrency", type=int, default=4, help="careloop worker --concurrency"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 probes, 1 s settle")
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
        args.probes = min(args.probes, 20)
        args.settle = min(args.settle, 1.0)
        args.interval = min(args.interval, 0.05)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    unknown = [b for b in brokers if b not in BROKERS]
    if unknown or not brokers:
        parser.error(f"--brokers takes a list of {', '.join(BROKERS)}, not {args.brokers!r}")
    args.brokers = brokers
    if args.probes < 1 or args.interval <= 0 or args.background_rate <= 0:
        parser.error("--probes, --interval and --background-rate must be positive")
    if args.background_clients < 1:
        parser.error("--background-clients must be at least 1")
    for item in args.env:
        if "=" not in item or not item.startswith("CARELOOP_"):
            parser.error(f"--env takes CARELOOP_NAME=VALUE, not {item!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every probe was delivered, 1 otherwise."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    urls = {"redis": args.redis_url, "rabbitmq": args.amqp_url}
    print(
        f"careloop alert latency benchmark: PostgreSQL {pg_version()}, brokers "
        f"{', '.join(args.brokers)}; API {args.api_workers} workers, worker "
        f"--concurrency {args.worker_concurrency} --pool threads, beat; {args.probes} probes "
        f"every {args.interval * 1000:g} ms per config; load {args.background_rate:g} reports/s "
        f"from {args.background_clients} clients; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )
    if args.env:
        print(f"careloop settings: {' '.join(args.env)}")
    results: list[ConfigResult] = []
    with tempfile.TemporaryDirectory(prefix="careloop-alertbench-") as tmp:
        logs = Path(tmp)
        try:
            for broker in args.brokers:
                results.extend(run_broker(broker, urls[broker], args, logs))
        finally:
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for path in logs.glob("*.log"):
                    shutil.copy(path, args.logs / path.name)
                print(f"logs in {args.logs}")
    print_table(results, args)
    print_breakdown(results)
    print_cpu(results)
    return 1 if any(r.lost or r.failed for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; processes stopped, queues deleted, databases dropped", file=sys.stderr)
        sys.exit(130)
