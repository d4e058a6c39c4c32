"""Scale out, proven: two APIs and two workers on PostgreSQL and RabbitMQ, one of each killed.

Runs careloop as real processes on a fresh PostgreSQL database and RabbitMQ queues of its own
(``CARELOOP_QUEUE``): two API processes (``careloop serve --workers 1`` on two ports), two Celery
workers (``careloop worker --pool threads --concurrency 4``) and one ``careloop beat``, with a
webhook receiver in this process (``tests/webhook_receiver.py``, loopback) as the tenant's
on-call channel. A load generator posts PHQ-9 reports at a steady rate (``--rate`` per second for
``--seconds``) round-robin to both APIs: routine ones (total 1, item 9 = 0) for a pool of
patients, and one in ``--critical-every`` with item 9 = 2 for a new patient (a critical alert of
its own). ``--kill-at`` seconds into the load it SIGKILLs one API process and one worker (the
worst case: the worker dies with tasks received, some running). A client whose request fails
(connection refused or reset, or a 5xx) sends the same request, with the same Idempotency-Key
and app_report_id, to the other API: careloop answers a retry of a report it already stored with
the stored report (200, or the first answer replayed), so nothing is doubled.

When the load ends and the work drained (polled with deadlines), it checks from PostgreSQL and
the receiver that every accepted report is stored exactly once, every critical report opened
exactly one alert, every alert was delivered to the webhook with exactly one distinct webhook-id
(raw deliveries are counted too: a redelivery of the same webhook-id after a kill is what
at-least-once allows, and a receiver deduplicates on it), no task is dead and every outbox row
completed. It prints the accepted reports per ``--bucket`` seconds before, around and after the
kill, the time until alerts flow again and the retries clients needed, then verdicts.
Processes, database and queues are removed on every exit (error, Ctrl-C, SIGTERM).

The routine outbox lease is shortened to 20 s (``CARELOOP_OUTBOX_LEASE_ROUTINE_SECONDS``): a
message the killed API's relay had claimed but not yet published waits out its lease, and the
run would otherwise wait two minutes for such a routine evaluation. Alert work keeps its 10 s.

    .venv/bin/python bench/scale_out.py                       # 40 s at 30 reports/s, kill at 15 s
    .venv/bin/python bench/scale_out.py --rate 20 --seconds 20 --kill-at 8
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import (  # noqa: E402
    HOST,
    TASK_EVENT,
    Server,
    careloop_cmd,
    delete_queue,
    fetch_token,
    free_port,
    fresh_database,
    iso,
    raise_keyboard_interrupt,
)
from webhook_receiver import Receiver, webhook_receiver  # noqa: E402

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
PATIENT_SYSTEM = "https://bench.careloop.example/patients"
REPORTS_PATH = "/v1/symptom-reports"


@dataclass(frozen=True)
class Config:
    """One run: the load, when to kill, how long to wait for the work to drain."""

    rate: float = 30.0
    seconds: float = 40.0
    kill_at: float = 15.0
    critical_every: int = 10
    patients: int = 50
    clients: int = 12
    bucket: float = 2.0
    retry_for: float = 30.0
    drain_for: float = 90.0
    worker_concurrency: int = 4
    broker_url: str = RABBITMQ


@dataclass
class Sent:
    """One report and what became of it."""

    n: int
    critical: bool
    first_sent: float = 0.0
    accepted_at: float | None = None
    status: int | None = None
    attempts: int = 0
    patient: str | None = None
    failures: Counter[str] = field(default_factory=Counter)


@dataclass
class Result:
    """What a run measured and found."""

    config: Config
    sent: list[Sent]
    kill_time: float
    kill_wall: datetime
    load_start: float
    receiver_deliveries: list[dict[str, Any]]
    reports_stored: Counter[str]
    alerts_by_patient: Counter[str]
    notifications: list[tuple[str, str, str, datetime | None]]
    """(id, alert id, status, delivered_at) of every notification."""
    alert_patient: dict[str, str]
    dead_tasks: int
    open_outbox: int
    not_done_outbox: int
    killed_worker_in_flight: int
    killed_returncodes: list[int | None]
    drained_in: float | None
    leftovers: int

    # -- the invariants --

    def accepted(self) -> list[Sent]:
        """Reports careloop accepted (201, or 200 for a recognised retry)."""
        return [s for s in self.sent if s.accepted_at is not None]

    def critical_patients(self) -> set[str]:
        """The patients of the accepted critical reports (one new patient per report)."""
        return {s.patient for s in self.accepted() if s.critical and s.patient}

    def problems(self) -> list[str]:
        """Every broken invariant, in words; empty when the run proved its point."""
        found = []
        unaccepted = [s.n for s in self.sent if s.accepted_at is None]
        if unaccepted:
            found.append(f"{len(unaccepted)} reports never accepted (e.g. {unaccepted[:5]})")
        wanted = {_app_report_id(s.n) for s in self.accepted()}
        stored = self.reports_stored
        twice = [k for k, c in stored.items() if c != 1]
        if twice:
            found.append(f"{len(twice)} reports stored more than once")
        if missing := wanted - set(stored):
            found.append(f"{len(missing)} accepted reports not stored")
        if extra := set(stored) - wanted:
            found.append(f"{len(extra)} stored reports nobody saw accepted")
        critical = {p.removeprefix("Patient/") for p in self.critical_patients()}
        alerts = self.alerts_by_patient
        if bad := {p for p in critical if alerts.get(p) != 1}:
            found.append(f"{len(bad)} critical reports without exactly one alert")
        if extra := set(alerts) - critical:
            found.append(f"{len(extra)} alerts for patients without a critical report")
        distinct = self.distinct_deliveries_by_alert()
        if bad := [a for a in self.alert_patient if distinct.get(a, 0) != 1]:
            found.append(f"{len(bad)} alerts without exactly one distinct webhook delivery")
        undelivered = [n for n in self.notifications if n[2] != "delivered"]
        if undelivered:
            found.append(f"{len(undelivered)} notifications not delivered")
        if self.dead_tasks:
            found.append(f"{self.dead_tasks} dead tasks")
        if self.open_outbox or self.not_done_outbox:
            found.append(
                f"outbox: {self.open_outbox} open, {self.not_done_outbox} completed not 'done'"
            )
        if self.leftovers:
            found.append(f"{self.leftovers} careloop processes outlived their stop")
        return found

    def distinct_deliveries_by_alert(self) -> Counter[str]:
        """Distinct webhook-ids received per alert (a webhook-id is a notification's id)."""
        alert_of = {n[0]: n[1] for n in self.notifications}
        ids = {d["webhook-id"] for d in self.receiver_deliveries}
        return Counter(alert_of[i] for i in ids if i in alert_of)

    # -- the figures --

    def rates(self) -> list[tuple[float, float]]:
        """(bucket start relative to the kill, accepted reports/s in it), for the whole buckets
        of the load, aligned on the kill."""
        width = self.config.bucket
        counts: Counter[int] = Counter()
        for s in self.accepted():
            assert s.accepted_at is not None
            counts[math.floor((s.accepted_at - self.kill_time) / width)] += 1
        end = self.load_start + self.config.seconds
        first = math.ceil((self.load_start - self.kill_time) / width - 1e-9)
        last = math.floor((end - self.kill_time) / width + 1e-9) - 1
        return [(b * width, counts.get(b, 0) / width) for b in range(first, last + 1)]

    def rate_before(self) -> float:
        """Mean accepted/s over the whole buckets before the kill, the first (warm-up) left out."""
        before = [r for at, r in self.rates() if at < 0][1:]
        return sum(before) / len(before) if before else 0.0

    def rate_after(self) -> float:
        """Mean accepted/s from the second bucket after the kill to the end of the load."""
        after = [r for at, r in self.rates() if at >= self.config.bucket]
        return sum(after) / len(after) if after else 0.0

    def baseline(self) -> float:
        """The rate to recover: the offered one, or what the machine managed before the kill
        if that was less (an offered rate above its capacity)."""
        return min(self.config.rate, self.rate_before())

    def recovered(self) -> bool:
        """The mean rate after the kill is at least 90% of the baseline."""
        return self.rate_after() >= 0.9 * self.baseline()

    def recovered_after(self) -> float | None:
        """Seconds from the kill to the bucket from which every bucket ran at >= 80% of the
        baseline (None: it never did)."""
        since = None
        for at, rate in self.rates():
            if at < 0:
                continue
            if rate < 0.8 * self.baseline():
                since = None
            elif since is None:
                since = at
        return since

    def alerts_flow_again(self) -> float | None:
        """Seconds from the kill to the first delivery of an alert reported after the kill."""
        after = {
            s.patient.removeprefix("Patient/")
            for s in self.accepted()
            if s.critical and s.patient and s.first_sent >= self.kill_time
        }
        alert_ids = {a for a, p in self.alert_patient.items() if p in after}
        times = [n[3] for n in self.notifications if n[1] in alert_ids and n[3] is not None]
        if not times:
            return None
        return (min(times) - self.kill_wall).total_seconds()

    def all_alerts_delivered_after_kill(self) -> float | None:
        """Seconds from the kill to the last delivery of an alert reported before it."""
        before = {
            s.patient.removeprefix("Patient/")
            for s in self.accepted()
            if s.critical and s.patient and s.first_sent < self.kill_time
        }
        alert_ids = {a for a, p in self.alert_patient.items() if p in before}
        times = [n[3] for n in self.notifications if n[1] in alert_ids and n[3] is not None]
        late = [t for t in times if t >= self.kill_wall]
        return (max(late) - self.kill_wall).total_seconds() if late else 0.0


def _app_report_id(n: int) -> str:
    return f"scale-{n:06d}"


def report_body(n: int, run: str, config: Config, base: datetime) -> tuple[bool, dict[str, Any]]:
    """Report ``n``: routine for a patient of the pool, or critical for a patient of its own."""
    critical = n % config.critical_every == config.critical_every - 1
    if critical:
        patient, answers = f"scale-{run}-critical-{n:06d}", [0] * 8 + [2]
    else:
        patient = f"scale-{run}-{n % config.patients:04d}"
        answers = [1 if i == n % 8 else 0 for i in range(8)] + [0]
    return critical, {
        "patient": {"system": PATIENT_SYSTEM, "value": patient},
        "instrument": "phq-9",
        "answers": answers,
        "effective": iso(base - timedelta(milliseconds=n)),
        "app_report_id": _app_report_id(n),
    }


# --------------------------------------------------------------------------------------------
# The processes


@dataclass
class Cluster:
    """Two APIs, two workers, one beat: careloop's processes on one database and broker."""

    apis: list[Server]
    workers: list[Server]
    beat: Server

    def all(self) -> list[Server]:
        """Every server, beat first (the order to stop them in)."""
        return [self.beat, *self.workers, *self.apis]


def _env(db_url: str, queue: str, data_dir: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARELOOP_")}
    return env | {
        "CARELOOP_ENVIRONMENT": "test",
        "CARELOOP_SECRET_KEY": "scale-out-" + secrets.token_urlsafe(32),
        "CARELOOP_DATABASE_URL": db_url,
        "CARELOOP_BROKER_URL": RABBITMQ,
        "CARELOOP_QUEUE": queue,
        "CARELOOP_DATA_DIR": str(data_dir),
        # Both APIs sit behind one address, as behind a load balancer: a token either issued
        # is valid at the other.
        "CARELOOP_BASE_URL": base_url,
        "CARELOOP_TOKEN_LIFETIME_SECONDS": "3600",
        "CARELOOP_RATE_LIMIT_API_PER_CLIENT": "",
        "CARELOOP_RATE_LIMIT_TOKEN_PER_CLIENT": "",
        "CARELOOP_OUTBOX_LEASE_ROUTINE_SECONDS": "20",
        "CARELOOP_LOG_LEVEL": "INFO",
    }


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; the seconds it took. Raises after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not reached in {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _ready(server: Server) -> bool:
    assert server.proc is not None
    if server.proc.poll() is not None:
        raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
    if server.port:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
        return False
    pattern = r"\S+@\S+ ready\." if "worker" in server.name else r"beat: Starting"
    return bool(server.log_lines(pattern))


@contextlib.contextmanager
def cluster(config: Config, logs: Path) -> Iterator[tuple[Cluster, str, str]]:
    """The processes on a fresh database and queues of their own; (cluster, db URL, queue).

    Stops every process, deletes the queues and drops the database on exit, however it exits.
    """
    from careloop.services.db import make_engine
    from careloop.services.migrate import upgrade

    queue = f"careloop-scale-{secrets.token_hex(4)}"
    ports = [free_port(), free_port()]
    base_url = f"http://{HOST}:{ports[0]}"
    with contextlib.ExitStack() as database:
        db_url = database.enter_context(fresh_database("careloop_scale_"))
        engine = make_engine(db_url, 2)
        upgrade(engine)  # once, before the APIs start (each would otherwise take the lock)
        engine.dispose()
        env = _env(db_url, queue, logs / "data", base_url)
        serve = ("serve", "--host", HOST, "--workers", "1", "--port")
        worker = ("worker", "--pool", "threads", "--concurrency", str(config.worker_concurrency))
        nodes = Cluster(
            apis=[
                Server(f"api-{i}", careloop_cmd(*serve, str(p)), env, p, logs)
                for i, p in enumerate(ports)
            ],
            workers=[Server(f"worker-{i}", careloop_cmd(*worker), env, 0, logs) for i in (0, 1)],
            beat=Server("beat", careloop_cmd("beat"), env, 0, logs),
        )
        try:
            for server in nodes.all():
                server.start()
            for server in nodes.all():
                _wait_for(lambda s=server: _ready(s), 120, f"{server.name} ready")
            yield nodes, db_url.replace("postgresql+psycopg://", "postgresql://"), queue
        except BaseException:
            for server in nodes.all():
                if server.proc is not None:
                    print(f"--- {server.name} log tail ---\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            with _uninterrupted():
                _tear_down(nodes, config, queue)
                database.close()  # drops it


def _tear_down(nodes: Cluster, config: Config, queue: str) -> None:
    for server in nodes.all():
        server.stop()
    for name in (queue, f"{queue}.urgent", f"{queue}.ehr"):
        try:
            delete_queue(config.broker_url, name)
        except Exception as exc:  # clean-up must not hide the real error
            print(f"  !!!  could not delete queue {name}: {exc!r}", file=sys.stderr)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM meanwhile (a second one must not cut the clean-up short)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _setup_tenant(db_url: str, receiver: Receiver) -> tuple[str, str, str]:
    """An app client and the on-call webhook route, in a tenant of the run's own."""
    from careloop.integrations.egress.destinations import DestinationPolicy
    from careloop.services.alerts.routes_service import add_route
    from careloop.services.db import make_engine
    from careloop.services.tenancy.service import create_client
    from careloop.services.unit_of_work import session_scope

    engine = make_engine(db_url, 2)
    try:
        with session_scope(engine) as session:
            new = create_client(session, "scale-out", "system/*.cruds", "scale-out")
            tenant_id = new.tenant_id
        with session_scope(engine) as session:
            add_route(
                session,
                tenant_id,
                "oncall",
                "webhook",
                receiver.url,
                receiver.secret,
                destinations=DestinationPolicy.create(production=False),
            )
    finally:
        engine.dispose()
    assert new.client_secret is not None
    return tenant_id, new.client_id, new.client_secret


# --------------------------------------------------------------------------------------------
# The load


class _TaskTail:
    """The tasks a worker has received and not yet finished, read from its log as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.open: set[str] = set()

    def in_flight(self) -> set[str]:
        """Task ids received and not finished so far."""
        with contextlib.suppress(OSError), self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
            complete = chunk.rfind(b"\n") + 1
            self.offset += complete
            for line in chunk[:complete].splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    match = TASK_EVENT.match(str(orjson.loads(line).get("event", "")))
                    if match and match.group(3) == "received":
                        self.open.add(match.group(2))
                    elif match and match.group(3).startswith("succeeded"):
                        self.open.discard(match.group(2))
        return self.open


class _Clients:
    """One httpx client per load thread (keep-alive connections to both APIs), all closed
    together at the end."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "http", None)
        if client is None:
            client = self._local.http = httpx.Client(timeout=10.0)
            with self._lock:
                self._all.append(client)
        return client

    def close(self) -> None:
        for client in self._all:
            client.close()


def _post(
    http: httpx.Client,
    urls: list[str],
    token: str,
    sent: Sent,
    body: dict[str, Any],
    config: Config,
) -> None:
    """POST ``body`` to ``urls[sent.n % 2]``, then alternately to the others until accepted."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Idempotency-Key": f"scale-report-{sent.n}",
    }
    content = orjson.dumps(body)
    give_up = time.monotonic() + config.retry_for
    while time.monotonic() < give_up:
        if sent.attempts and sent.attempts % len(urls) == 0:
            time.sleep(0.2)  # every API failed it once: back off a little before the next round
        url = urls[(sent.n + sent.attempts) % len(urls)]
        sent.attempts += 1
        try:
            response = http.post(url + REPORTS_PATH, content=content, headers=headers)
        except httpx.TransportError as exc:
            sent.failures[type(exc).__name__] += 1
            continue
        if response.status_code >= 500:
            sent.failures[str(response.status_code)] += 1
            continue
        sent.status = response.status_code
        if response.status_code in (200, 201):
            sent.accepted_at = time.monotonic()
            sent.patient = response.json()["patient"]
        return


def run_load(
    urls: list[str], token: str, config: Config, on_kill: Callable[[], None]
) -> tuple[list[Sent], float, float, datetime]:
    """Send the reports on schedule; call ``on_kill`` at ``kill_at``. (sent, start, kill, wall)."""
    run = secrets.token_hex(3)
    base = datetime.now(UTC) - timedelta(minutes=5)
    total = int(config.rate * config.seconds)
    sent = [Sent(n, report_body(n, run, config, base)[0]) for n in range(total + 2 * len(urls))]
    clients = _Clients()
    # Warm-up: each API's first reports are slow (first connections, lazily built parts); two
    # each, before the clock starts (stored and checked like the others, outside the rates).
    for item in sent[total:]:
        item.first_sent = time.monotonic()
        _post(clients.get(), urls, token, item, report_body(item.n, run, config, base)[1], config)
    start = time.monotonic()
    killed: dict[str, Any] = {}
    stop = threading.Event()  # set when the run is interrupted: the load threads end early

    def killer() -> None:
        if not stop.wait(max(0.0, start + config.kill_at - time.monotonic())):
            on_kill()
            killed["at"], killed["wall"] = time.monotonic(), datetime.now(UTC)

    kill_thread = threading.Thread(target=killer, name="killer")
    kill_thread.start()

    def one(item: Sent) -> None:
        # Pacing the load on its schedule (not synchronisation).
        if stop.wait(max(0.0, start + item.n / config.rate - time.monotonic())):
            return
        item.first_sent = time.monotonic()
        body = report_body(item.n, run, config, base)[1]
        _post(clients.get(), urls, token, item, body, config)

    pool = ThreadPoolExecutor(config.clients, thread_name_prefix="load")
    try:
        list(pool.map(one, sent[:total]))
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(cancel_futures=True)
        kill_thread.join()
        clients.close()
    return sent, start, killed["at"], killed["wall"]


# --------------------------------------------------------------------------------------------
# What PostgreSQL says


def _scalar(conn: psycopg.Connection[Any], sql: str, *args: Any) -> int:
    row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row else 0


def _open_work(pg_url: str, tenant_id: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return _scalar(
            conn,
            "SELECT count(*) FROM outbox_message WHERE tenant_id = %s AND completed_at IS NULL",
            tenant_id,
        )


def _queued(queue: str) -> int:
    from kombu import connection as kombu_connection

    connection_class: Any = kombu_connection.Connection
    total = 0
    with connection_class(RABBITMQ, connect_timeout=5) as conn:
        channel = conn.channel()
        for name in (queue, f"{queue}.urgent", f"{queue}.ehr"):
            with contextlib.suppress(Exception):
                total += channel.queue_declare(queue=name, passive=True).message_count
    return total


def run(config: Config, logs: Path) -> Result:
    """One run: start everything, load, kill, drain, read the verdicts' evidence."""
    with (
        webhook_receiver(_webhook_secret()) as receiver,
        cluster(config, logs) as (nodes, pg_url, queue),
    ):
        tenant_id, client_id, client_secret = _setup_tenant(
            pg_url.replace("postgresql://", "postgresql+psycopg://"), receiver
        )
        urls = [api.url for api in nodes.apis]
        token = fetch_token(urls[0], client_id, client_secret)
        doomed_api, doomed_worker = nodes.apis[0], nodes.workers[0]

        tasks = _TaskTail(doomed_worker.log_path)
        in_hand: list[int] = []

        def kill() -> None:
            # The worst case: the worker dies with work in hand. Wait (a few seconds at most)
            # for a task it received and has not finished.
            deadline = time.monotonic() + 5.0
            while not tasks.in_flight() and time.monotonic() < deadline:
                time.sleep(0.01)
            in_hand.append(len(tasks.in_flight()))
            for server in (doomed_api, doomed_worker):
                assert server.proc is not None
                os.kill(server.proc.pid, signal.SIGKILL)

        sent, start, kill_time, kill_wall = run_load(urls, token, config, kill)
        returncodes = []
        for server in (doomed_api, doomed_worker):
            assert server.proc is not None
            returncodes.append(server.proc.wait(timeout=30))

        critical = sum(1 for s in sent if s.critical and s.accepted_at is not None)
        drained_in: float | None
        try:
            drained_in = _wait_for(
                lambda: (
                    len(receiver.unique_ids()) >= critical
                    and _open_work(pg_url, tenant_id) == 0
                    and _queued(queue) == 0
                ),
                config.drain_for,
                "every alert delivered and the work drained",
            )
        except TimeoutError:
            drained_in = None  # the verdicts say what is missing
        with psycopg.connect(pg_url) as conn:
            stored = Counter(
                {
                    str(r[0]): int(r[1])
                    for r in conn.execute(
                        "SELECT app_report_id, count(*) FROM symptom_report "
                        "WHERE tenant_id = %s GROUP BY app_report_id",
                        (tenant_id,),
                    )
                }
            )
            alert_rows = conn.execute(
                "SELECT id, patient_id FROM alert WHERE tenant_id = %s", (tenant_id,)
            ).fetchall()
            notifications = [
                (str(r[0]), str(r[1]), str(r[2]), r[3])
                for r in conn.execute(
                    "SELECT id, alert_id, status, delivered_at FROM notification "
                    "WHERE tenant_id = %s",
                    (tenant_id,),
                )
            ]
            dead = _scalar(conn, "SELECT count(*) FROM dead_task")
            open_rows = _scalar(
                conn,
                "SELECT count(*) FROM outbox_message WHERE tenant_id = %s AND completed_at IS NULL",
                tenant_id,
            )
            not_done = _scalar(
                conn,
                "SELECT count(*) FROM outbox_message WHERE tenant_id = %s "
                "AND completed_at IS NOT NULL AND outcome != 'done'",
                tenant_id,
            )
        deliveries = list(receiver.deliveries)
    return Result(
        config=config,
        sent=sent,
        kill_time=kill_time,
        kill_wall=kill_wall,
        load_start=start,
        receiver_deliveries=deliveries,
        reports_stored=stored,
        alerts_by_patient=Counter(str(r[1]) for r in alert_rows),
        notifications=notifications,
        alert_patient={str(r[0]): str(r[1]) for r in alert_rows},
        dead_tasks=dead,
        open_outbox=open_rows,
        not_done_outbox=not_done,
        killed_worker_in_flight=in_hand[0],
        killed_returncodes=returncodes,
        drained_in=drained_in,
        leftovers=sum(s.leftovers for s in nodes.all()),
    )


def _webhook_secret() -> str:
    from careloop.integrations.channels import generate_webhook_secret

    return generate_webhook_secret()


# --------------------------------------------------------------------------------------------
# The report


def print_result(result: Result) -> None:
    """The figures and the verdicts."""
    config = result.config
    accepted = result.accepted()
    retried = [s for s in accepted if s.attempts > 1]
    failures: Counter[str] = Counter()
    for s in result.sent:
        failures.update(s.failures)
    print(
        f"\nload: {len(result.sent)} PHQ-9 reports at {config.rate:g}/s for {config.seconds:g} s "
        f"round-robin to 2 APIs; SIGKILL of api-0 and worker-0 at {config.kill_at:g} s"
    )
    print(
        f"accepted {len(accepted)} ({Counter(s.status for s in accepted)}); "
        f"{len(retried)} needed a retry at the other API "
        f"(failures seen: {dict(failures) or 'none'})"
    )
    latencies = sorted(
        (s.accepted_at - s.first_sent) * 1000 for s in retried if s.accepted_at is not None
    )
    if latencies:
        print(f"  a retried report was accepted within {latencies[-1]:,.0f} ms of its first try")
    print(
        f"the killed worker had {result.killed_worker_in_flight} tasks in hand (received, not "
        "finished) when it was killed"
    )
    print(f"\naccepted reports/s per {config.bucket:g} s (time relative to the kill):")
    for at, rate in result.rates():
        bar = "#" * round(rate / max(config.rate, 1) * 40)
        print(f"  {at:+6.0f} s  {rate:6.1f}/s  {bar}")
    recovered = result.recovered_after()
    print(
        f"mean rate before the kill {result.rate_before():.1f}/s, from +{config.bucket:g} s "
        f"after it {result.rate_after():.1f}/s (offered {config.rate:g}/s); every bucket at "
        f"80% of {result.baseline():.1f}/s or more "
        + (f"from +{recovered:g} s" if recovered is not None else "NEVER again")
    )
    flow = result.alerts_flow_again()
    catch_up = result.all_alerts_delivered_after_kill()
    print(
        "alerts flow again: first delivery of an alert reported after the kill "
        + (f"{flow:.1f} s after the kill" if flow is not None else "never")
    )
    print(f"  last delivery of an alert reported before the kill: {catch_up or 0:.1f} s after it")
    distinct = result.distinct_deliveries_by_alert()
    raw = Counter(d["webhook-id"] for d in result.receiver_deliveries)
    redelivered = {i: c for i, c in raw.items() if c > 1}
    print(
        f"alerts {len(result.alert_patient)}, webhook deliveries raw {sum(raw.values())}, "
        f"distinct webhook-ids {len(raw)} (alerts with exactly one: "
        f"{sum(1 for c in distinct.values() if c == 1)}); "
        f"{len(redelivered)} webhook-ids delivered more than once (at-least-once allows it "
        "after a kill; a receiver deduplicates on webhook-id)"
    )
    print(
        "drained "
        + (f"{result.drained_in:.1f} s after the load ended" if result.drained_in else "NOT")
    )
    problems = result.problems()
    print("\nverdicts:")
    print(
        "  every accepted report stored exactly once, every critical report one alert, every "
        "alert delivered once, no dead task: " + ("yes" if not problems else "NO")
    )
    for problem in problems:
        print(f"    !!! {problem}")
    print(
        "  throughput recovered (the mean rate from +1 bucket after the kill at 90% or more of "
        "the offered rate, or of the rate before the kill if that was less): "
        + ("yes" if result.recovered() else "NO")
    )


def main() -> int:
    """Parse the arguments, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=Config.rate)
    parser.add_argument("--seconds", type=float, default=Config.seconds)
    parser.add_argument("--kill-at", type=float, default=Config.kill_at)
    parser.add_argument("--critical-every", type=int, default=Config.critical_every)
    parser.add_argument("--clients", type=int, default=Config.clients)
    parser.add_argument("--bucket", type=float, default=Config.bucket)
    args = parser.parse_args()
    config = Config(
        rate=args.rate,
        seconds=args.seconds,
        kill_at=args.kill_at,
        critical_every=args.critical_every,
        clients=args.clients,
        bucket=args.bucket,
    )
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        with tempfile.TemporaryDirectory(prefix="careloop-scale-") as tmp:
            result = run(config, Path(tmp))
    except KeyboardInterrupt:
        print("interrupted (processes, queues and database removed)", file=sys.stderr)
        return 130
    print_result(result)
    return 0 if not result.problems() else 1


if __name__ == "__main__":
    sys.exit(main())
