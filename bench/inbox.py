"""Inbox benchmark: ``GET /inbox`` for a tenant with many patients' alerts, some withheld.

Seeds ``--patients`` patients (each known to careloop through one symptom report) with
``--alerts`` open alerts each, and gives every tenth of them a Consent denying care-team alerts,
on a fresh PostgreSQL database (or SQLite with ``--sqlite``). Then renders the inbox in-process
(FastAPI TestClient, signed in as a clinician) ``--renders`` times, unfiltered and filtered to
one patient, and prints p50 and p99 and the SQL statements one load runs. The consent check
adds one batched read of the alerting patients' Consents (per 500 patients) to each load.

    .venv/bin/python bench/inbox.py                      # PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/inbox.py --sqlite --renders 50
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_ms, fresh_database, percentile  # noqa: E402

from careloop.services.alerts.firing import Firing  # noqa: E402
from careloop.services.alerts.opening import apply_firings  # noqa: E402
from careloop.services.auth.scopes import Grant, parse_scopes  # noqa: E402
from careloop.services.auth.tokens import Principal  # noqa: E402
from careloop.services.clinicians.models import Clinician  # noqa: E402
from careloop.services.clinicians.sessions import COOKIE, open_session  # noqa: E402
from careloop.services.consents.schemas import ConsentIn  # noqa: E402
from careloop.services.consents.service import record_consent  # noqa: E402
from careloop.services.db import make_engine, utcnow  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.reports.schemas import SymptomReportIn  # noqa: E402
from careloop.services.reports.service import ingest_reports  # noqa: E402
from careloop.services.settings import Environment, Settings  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402
from careloop.workflows.web import create_app  # noqa: E402

SYSTEM = "https://app.example/patients"
SCOPE = "system/*.cruds"


def seed(engine: Engine, settings: Settings, patients: int, alerts: int) -> tuple[str, str]:
    """A signed-in session id and one patient id, after seeding."""
    with session_scope(engine) as session:
        client = create_client(session, "bench", SCOPE, f"bench-{secrets.token_hex(3)}")
        tenant = client.tenant_id
    principal = Principal(client.client_id, tenant, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0)
    ids: list[str] = []
    for start in range(0, patients, 200):
        reports = [
            SymptomReportIn.model_validate(
                {
                    "patient": {"system": SYSTEM, "value": f"bench-{n}"},
                    "instrument": "mood",
                    "effective": utcnow().isoformat(),
                    "value": 5,
                }
            )  # fmt: skip
            for n in range(start, min(patients, start + 200))
        ]
        with session_scope(engine) as session:
            outcomes = ingest_reports(session, principal, reports)
            ids += [str(o.patient).removeprefix("Patient/") for o in outcomes]
    for n, patient in enumerate(ids):
        with session_scope(engine) as session:
            for a in range(alerts):
                firing = Firing(f"bench-{a}", "warning", f"Bench {a}", {"value": 1}, {}, "bench")
                apply_firings(session, settings, tenant, patient, [firing], None)
            if n % 10 == 0:
                denial = {"patient": {"system": SYSTEM, "value": f"bench-{n}"},
                          "decision": "deny", "purpose": "care-team-alerts"}  # fmt: skip
                record_consent(session, principal, ConsentIn.model_validate(denial))
    with session_scope(engine) as session:
        clinician = Clinician(
            id=secrets.token_hex(8), tenant_id=tenant, email="bench@example.org",
            name="Dr Bench", practitioner=None, password_hash=None,
        )  # fmt: skip
        session.add(clinician)
        session.flush()
        return open_session(session, tenant, clinician).id, ids[1]


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str]:
    """A scratch database URL."""
    if sqlite:
        with tempfile.TemporaryDirectory(prefix="careloop-bench-") as scratch:
            yield f"sqlite:///{scratch}/bench.db"
    else:
        with fresh_database("careloop_bench_inbox_") as url:
            yield url


def _statements(engine: Engine, client: TestClient, path: str) -> int:
    seen: list[Any] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get(path).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def main() -> None:
    """Seed, render, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=100)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    with database(args.sqlite) as url, tempfile.TemporaryDirectory() as data_dir:
        engine = make_engine(url, pool_size=5)
        upgrade(engine)
        settings = Settings(
            environment=Environment.test, database_url=url, data_dir=Path(data_dir),
            secret_key="bench-" + secrets.token_urlsafe(32), base_url="http://testserver",
            relay_after_commit=False,
        )  # fmt: skip
        began = time.perf_counter()
        session_id, patient = seed(engine, settings, args.patients, args.alerts)
        if not args.sqlite:  # as autovacuum would have on a live database
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"seeded in {time.perf_counter() - began:.1f} s ({backend}, {args.patients} patients "
            f"x {args.alerts} open alerts, every tenth denying care-team alerts)"
        )
        with TestClient(create_app(settings, engine)) as client:
            client.cookies.set(COOKIE, session_id)
            for path in ("/inbox", f"/inbox?patient={patient}"):
                for _ in range(5):
                    assert client.get(path).status_code == 200
                statements = _statements(engine, client, path)
                times = []
                for _ in range(args.renders):
                    start = time.perf_counter()
                    assert client.get(path).status_code == 200
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                shown = "/inbox?patient=" if "?" in path else "/inbox"
                print(
                    f"{shown:<16} n={args.renders}  p50 {fmt_ms(percentile(times, 50))} ms  "
                    f"p99 {fmt_ms(percentile(times, 99))} ms  ({statements} SQL statements)"
                )
        engine.dispose()


if __name__ == "__main__":
    main()
