"""Evaluation cost benchmark: judging one reading for a patient with 10, 500 or 2,000 before it.

Seeds a fresh PostgreSQL database (or SQLite with ``--sqlite``) with one patient per history
size N (weekly PHQ-9 and GAD-7, daily mood; N readings in all, the newest an hour ago), then
times the worker's evaluation of a new reading: the handler the Celery task and the inline
runner run (``workflows.handlers``), up to its flush; the unit of work is then rolled back, so
the history keeps its size from run to run. The new readings
rotate through PHQ-9, GAD-7 and mood with values that fire no rule, so every run costs the same.
Then times the missed check-in scan (``workflows.evaluation.scan_missed_checkins``) over
``--plans`` patients with a daily CarePlan and ``--plan-history`` readings each (none overdue,
so repeated scans do the same work). PostgreSQL is analysed after seeding, as autovacuum would
have done on a live database.

    .venv/bin/python bench/evaluation_cost.py                  # PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/evaluation_cost.py --sqlite --runs 20
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, text
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_ms, fresh_database, percentile  # noqa: E402

from careloop.services.auth.scopes import Grant, parse_scopes  # noqa: E402
from careloop.services.auth.tokens import Principal  # noqa: E402
from careloop.services.db import make_engine, utcnow  # noqa: E402
from careloop.services.fhirapi.writes import create_managed  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.reports.schemas import SymptomReportIn  # noqa: E402
from careloop.services.reports.service import ingest_reports  # noqa: E402
from careloop.services.settings import Environment, Settings  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402
from careloop.workflows.evaluation import scan_missed_checkins  # noqa: E402
from careloop.workflows.handlers import HANDLERS  # noqa: E402
from careloop.workflows.task_names import TaskName  # noqa: E402

SYSTEM = "https://app.example/patients"
SCOPE = "system/*.cruds"
SIZES = (10, 500, 2000)
EVALUATE = HANDLERS[TaskName.OBSERVATION_EVALUATE]


def _answers(total: int, items: int) -> list[int]:
    return [min(3, max(0, total - 3 * i)) for i in range(items)]


def _report(patient: str, instrument: str, when: datetime, **body: object) -> SymptomReportIn:
    return SymptomReportIn.model_validate(
        {"patient": {"system": SYSTEM, "value": patient}, "instrument": instrument,
         "effective": when, **body}
    )  # fmt: skip


def _history(patient: str, count: int, end: datetime) -> list[SymptomReportIn]:
    """``count`` reports ending at ``end``: a mood a day, a PHQ-9 and a GAD-7 every 7th day."""
    reports: list[SymptomReportIn] = []
    day = 0
    while len(reports) < count:
        when = end - timedelta(days=day)
        reports.append(_report(patient, "mood", when, value=4 + day % 5))
        if day % 7 == 3 and len(reports) < count:
            reports.append(_report(patient, "phq-9", when, answers=_answers(8, 9)))
        if day % 7 == 3 and len(reports) < count:
            reports.append(_report(patient, "gad-7", when, answers=_answers(6, 7)))
        day += 1
    return reports[::-1]


def _ingest(engine: Engine, principal: Principal, reports: list[SymptomReportIn]) -> list[str]:
    """The patient ids of the reports, ingested 500 to a unit of work."""
    patients: list[str] = []
    for start in range(0, len(reports), 500):
        with session_scope(engine) as session:
            outcomes = ingest_reports(session, principal, reports[start : start + 500])
            patients += [str(o.patient).removeprefix("Patient/") for o in outcomes]
    return patients


def _care_plan(patient: str) -> dict[str, object]:
    return {
        "resourceType": "CarePlan", "status": "active", "intent": "plan",
        "subject": {"reference": f"Patient/{patient}"},
        "activity": [{"detail": {
            "status": "in-progress",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44249-1"}]},
            "scheduledTiming": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        }}],
    }  # fmt: skip


def seed(engine: Engine, plans: int, plan_history: int) -> tuple[Principal, dict[int, str]]:
    """The caller and, for each history size, the patient with that many readings."""
    with session_scope(engine) as session:
        client = create_client(session, "bench", SCOPE, f"bench-{secrets.token_hex(3)}")
    principal = Principal(
        client.client_id, client.tenant_id, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0
    )
    end = utcnow() - timedelta(hours=1)
    by_size: dict[int, str] = {}
    for size in SIZES:
        by_size[size] = _ingest(engine, principal, _history(f"bench-n{size}", size, end))[0]
    reports: list[SymptomReportIn] = []
    for n in range(plans):
        reports += _history(f"bench-plan-{n}", plan_history, end)
    planned = sorted(set(_ingest(engine, principal, reports)))
    with session_scope(engine) as session:
        for patient in planned:
            create_managed(session, principal, "CarePlan", _care_plan(patient), None)
    return principal, by_size


def time_evaluations(engine: Engine, settings: Settings, principal: Principal, identifier: str,
                     runs: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Milliseconds of each evaluation of a new reading (to its flush), sorted: wall clock, and
    the CPU of this process (the shared machine's other load left out)."""
    times: list[float] = []
    cpus: list[float] = []
    start = utcnow() - timedelta(minutes=50)
    for n in range(runs):
        when = start + timedelta(seconds=n)
        kind = n % 3
        if kind == 0:
            report = _report(identifier, "mood", when, value=5)
        elif kind == 1:
            report = _report(identifier, "phq-9", when, answers=_answers(8, 9))
        else:
            report = _report(identifier, "gad-7", when, answers=_answers(6, 7))
        with Session(engine) as session:  # rolled back: the history stays at its size
            [outcome] = ingest_reports(session, principal, [report])
            [reference] = [r for r in outcome.resources if r.startswith("Observation/")]
            observation_id = reference.removeprefix("Observation/")
            session.flush()
            began, cpu = time.perf_counter(), time.process_time()
            result = EVALUATE.handle(
                session, settings, tenant_id=principal.tenant_id, observation_id=observation_id
            )
            session.flush()
            times.append((time.perf_counter() - began) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
            session.rollback()
        assert result.value == [], "a benchmark reading fired a rule"
    return sorted(times), sorted(cpus)


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str]:
    """A scratch database URL."""
    if sqlite:
        with tempfile.TemporaryDirectory(prefix="careloop-bench-") as scratch:
            yield f"sqlite:///{scratch}/bench.db"
    else:
        with fresh_database("careloop_bench_eval_") as url:
            yield url


def main() -> None:
    """Seed, evaluate, scan, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="evaluations per history size")
    parser.add_argument("--plans", type=int, default=100, help="patients with a CarePlan")
    parser.add_argument("--plan-history", type=int, default=100, help="readings of each")
    parser.add_argument("--scans", type=int, default=5)
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
        principal, by_size = seed(engine, args.plans, args.plan_history)
        if not args.sqlite:  # as autovacuum would have on a live database
            with engine.begin() as connection:  # committed: a rolled back ANALYZE is lost
                connection.execute(text("ANALYZE"))
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"seeded in {time.perf_counter() - began:.1f} s ({backend}; patients with "
            f"{', '.join(map(str, SIZES))} readings; {args.plans} with a CarePlan and "
            f"{args.plan_history} readings each)"
        )
        for size in SIZES:
            time_evaluations(engine, settings, principal, f"bench-n{size}", 6)  # warm up
            times, cpus = time_evaluations(engine, settings, principal, f"bench-n{size}", args.runs)
            print(
                f"evaluate one reading, {size:>4} before it  n={args.runs}  "
                f"p50 {fmt_ms(percentile(times, 50))} ms  p99 {fmt_ms(percentile(times, 99))} ms"
                f"  (client CPU p50 {fmt_ms(percentile(cpus, 50))} ms)"
            )
        scans, scan_cpus = [], []
        for _ in range(args.scans + 1):
            start, cpu = time.perf_counter(), time.process_time()
            with session_scope(engine) as session:
                opened = scan_missed_checkins(session, settings, utcnow())
            scans.append((time.perf_counter() - start) * 1000)
            scan_cpus.append((time.process_time() - cpu) * 1000)
            assert opened == 0, "a benchmark patient was overdue"
        scans, scan_cpus = sorted(scans[1:]), sorted(scan_cpus[1:])
        print(
            f"missed check-in scan, {args.plans} patients with a CarePlan  n={args.scans}  "
            f"p50 {fmt_ms(percentile(scans, 50))} ms  "
            f"({percentile(scans, 50) / args.plans:.2f} ms a patient; "
            f"client CPU p50 {fmt_ms(percentile(scan_cpus, 50))} ms)"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
