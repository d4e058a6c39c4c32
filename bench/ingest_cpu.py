"""Ingest CPU benchmark: the CPU and SQL statements one PHQ-9 report costs, layer by layer.

``bench/ingest.py`` measures throughput on a shared 2-core machine, where every figure moves with
whatever else runs. This script measures what a report costs this process instead (CPU time, not
wall time, so other load hardly moves it), on a fresh PostgreSQL database (or SQLite), each layer
on its own:

* ``service``  ``ingest_reports`` and the commit, in a unit of work of one report;
* ``batch``    ``ingest_reports`` of ``--reports`` reports in one unit of work, as the batch
               endpoint runs it (its body parsing left out);
* ``http``     ``POST /v1/symptom-reports`` through the whole ASGI app (auth, body, idempotency,
               the unit of work, the response; no socket, no server), the outbox hand-off off.

For each: CPU ms per report (p50 over ``--rounds`` rounds of ``--reports`` reports), SQL
statements per report (counted by a SQLAlchemy event) and, with ``--profile``, the top functions
by cumulative CPU (cProfile).

    .venv/bin/python bench/ingest_cpu.py
    .venv/bin/python bench/ingest_cpu.py --sqlite --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, event

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_database  # noqa: E402

from careloop.services.app import create_app  # noqa: E402
from careloop.services.auth.scopes import Grant, parse_scopes  # noqa: E402
from careloop.services.auth.tokens import Principal, issue_token  # noqa: E402
from careloop.services.db import make_engine, utcnow  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.reports.schemas import SymptomReportIn  # noqa: E402
from careloop.services.reports.service import ingest_reports  # noqa: E402
from careloop.services.settings import Environment, Settings  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402

SYSTEM = "https://bench.careloop.example/patients"
SCOPE = "system/*.cruds"
BASE_URL = "http://bench.invalid"


class Counter:
    """SQL statements executed on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def report_body(n: int, patients: int) -> dict[str, Any]:
    """A distinct routine PHQ-9 report (patient ``n % patients``, effective ``n`` s ago)."""
    return {
        "patient": {"system": SYSTEM, "value": f"p-{n % patients}"},
        "instrument": "phq-9",
        "effective": (utcnow() - timedelta(days=30) + timedelta(seconds=n)).isoformat(),
        "answers": [n % 3, 1, 0, 1, 0, 1, 0, 1, 0],
        "app_report_id": f"r-{n}",
    }


def measure(
    label: str, run: Callable[[int], None], reports: int, rounds: int, counter: Counter
) -> tuple[float, float]:
    """CPU ms per report (median round) and statements per report."""
    run(reports)  # warm caches, patients created
    per_report: list[float] = []
    statements = 0
    for _ in range(rounds):
        before, seen = time.process_time(), counter.count
        run(reports)
        per_report.append((time.process_time() - before) * 1000 / reports)
        statements = counter.count - seen
    cpu = statistics.median(per_report)
    print(f"{label:<8} {cpu:8.2f} ms CPU/report   {statements / reports:5.1f} statements/report")
    return cpu, statements / reports


def main(argv: list[str] | None = None) -> int:
    """Run the layers and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--reports", type=int, default=300, help="reports per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="cProfile one round per layer")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="trace as the API does, exporting over OTLP/HTTP to a sink in another process",
    )
    args = parser.parse_args(argv)
    if args.sqlite:
        folder = tempfile.mkdtemp(prefix="careloop-bench-")
        return run_all(f"sqlite:///{folder}/bench.db", args)
    with fresh_database() as url:
        return run_all(url, args)


def run_all(url: str, args: argparse.Namespace) -> int:
    """Both layers on the database at ``url``."""
    settings = Settings(
        environment=Environment.dev,
        database_url=url,
        base_url=BASE_URL,
        secret_key=secrets.token_urlsafe(32),
        relay_after_commit=False,
        rate_limit_api_per_client="",
    )
    sink = start_tracing() if args.tracing else None
    engine = make_engine(url, settings.db_pool_size)
    upgrade(engine)
    counter = Counter(engine)
    with session_scope(engine) as session:
        client = create_client(session, "bench", SCOPE, f"bench-{secrets.token_hex(3)}")
    principal = Principal(
        client.client_id, client.tenant_id, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0
    )
    serial = iter(range(10**9))

    def service(count: int) -> None:
        for _ in range(count):
            report = SymptomReportIn.model_validate(report_body(next(serial), args.patients))
            with session_scope(engine) as session:
                ingest_reports(session, principal, [report])

    def batch(count: int) -> None:
        reports = [
            SymptomReportIn.model_validate(report_body(next(serial), args.patients))
            for _ in range(count)
        ]
        with session_scope(engine) as session:
            ingest_reports(session, principal, reports)

    app = create_app(settings, engine)
    token = issue_token(
        settings.secret_key, BASE_URL, client.client_id, client.tenant_id, SCOPE, 3600
    )
    headers = {"Authorization": f"Bearer {token}"}

    async def post_all(count: int) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            for _ in range(count):
                body = report_body(next(serial), args.patients)
                answer = await http.post("/v1/symptom-reports", json=body, headers=headers)
                if answer.status_code != 201:
                    raise RuntimeError(f"{answer.status_code}: {answer.text}")

    def http(count: int) -> None:
        asyncio.run(post_all(count))

    print(f"{'sqlite' if args.sqlite else 'postgresql'}: {args.rounds} rounds of {args.reports}")
    for label, run in (("service", service), ("batch", batch), ("http", http)):
        measure(label, run, args.reports, args.rounds, counter)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run(args.reports)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    loaded = sorted({m for m in sys.modules if m.startswith("opentelemetry.sdk")})
    print(f"tracing {'on' if sink else 'off'}; OpenTelemetry SDK loaded: {bool(loaded)}")
    engine.dispose()
    if sink is not None:
        from careloop.services.telemetry import active

        tracing = active()
        assert tracing is not None
        tracing.shutdown()
        sink.terminate()
    return 0


_SINK = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def start_tracing() -> subprocess.Popen[str]:
    """Trace this process into an OTLP/HTTP sink (another process, so its CPU is not ours)."""
    from careloop.services.telemetry import Role, TracingConfig
    from careloop.services.telemetry.provider import install

    sink = subprocess.Popen([sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    port = int(sink.stdout.readline())
    install(TracingConfig(f"http://127.0.0.1:{port}/v1/traces", f"careloop-{Role.api.value}"))
    return sink


if __name__ == "__main__":
    sys.exit(main())
