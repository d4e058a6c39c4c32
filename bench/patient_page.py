"""Patient page benchmark: ``GET /patients/{id}`` for a patient with two years of history.

Seeds one patient on a fresh PostgreSQL database (or SQLite with ``--sqlite``) with two years of
daily mood and sleep (730 + 730 reports), weekly PHQ-9 and GAD-7 (104 + 104), a goal, a CarePlan,
a telehealth session every other week and a few alerts, plus ``--others`` patients with a year
of weekly PHQ-9s each (so the tables are not one patient's). Then renders the page in-process
(FastAPI TestClient, signed in as a clinician) ``--renders`` times per period and prints p50 and
p99. Target: under 300 ms. The page's queries are bounded by its period, so the 24-month view
costs about twice the 12-month one whatever the history before it. PostgreSQL is analysed after
seeding, as autovacuum would have done on a live database.

    .venv/bin/python bench/patient_page.py                  # PostgreSQL (127.0.0.1:5432)
    .venv/bin/python bench/patient_page.py --sqlite --renders 50
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_ms, fresh_database, percentile  # noqa: E402

from careloop.services.alerts.firing import Firing  # noqa: E402
from careloop.services.alerts.opening import apply_firings  # noqa: E402
from careloop.services.auth.scopes import Grant, parse_scopes  # noqa: E402
from careloop.services.auth.tokens import Principal  # noqa: E402
from careloop.services.clinicians.models import Clinician  # noqa: E402
from careloop.services.clinicians.sessions import COOKIE, open_session  # noqa: E402
from careloop.services.db import make_engine, utcnow  # noqa: E402
from careloop.services.fhirapi.writes import create_managed  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.reports.schemas import SymptomReportIn  # noqa: E402
from careloop.services.reports.service import ingest_reports  # noqa: E402
from careloop.services.settings import Environment, Settings  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402
from careloop.workflows.web import create_app  # noqa: E402

SYSTEM = "https://app.example/patients"
SCOPE = "system/*.cruds"


def _answers(total: int, items: int) -> list[int]:
    return [min(3, max(0, total - 3 * i)) for i in range(items)]


def _report(patient: str, instrument: str, when: object, **body: object) -> SymptomReportIn:
    return SymptomReportIn.model_validate(
        {"patient": {"system": SYSTEM, "value": patient}, "instrument": instrument,
         "effective": when, **body}
    )  # fmt: skip


def _history(patient: str, days: int, daily: bool) -> list[SymptomReportIn]:
    now = utcnow()
    start = now - timedelta(days=days)
    reports = []
    for week in range(days // 7):
        when = start + timedelta(weeks=week, hours=9)
        phq9 = max(3, 20 - week // 6) if week % 9 else 12
        reports.append(_report(patient, "phq-9", when, answers=_answers(phq9, 9)))
        reports.append(_report(patient, "gad-7", when, answers=_answers(max(2, 15 - week // 8), 7)))
    if daily:
        for day in range(days):
            when = start + timedelta(days=day, hours=21)
            reports.append(_report(patient, "mood", when, value=3 + (day * 7) % 6))
            reports.append(_report(patient, "sleep-duration", when, value=5.5 + (day % 5) * 0.5))
    return reports


def seed(engine: Engine, settings: Settings, others: int) -> tuple[str, str, str]:
    """The tenant, the patient id and a signed-in session id."""
    with session_scope(engine) as session:
        client = create_client(session, "bench", SCOPE, f"bench-{secrets.token_hex(3)}")
        tenant = client.tenant_id
    principal = Principal(client.client_id, tenant, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0)
    reports = _history("bench-patient", 730, daily=True)
    for n in range(others):
        reports += _history(f"bench-other-{n}", 365, daily=False)
    patient = ""
    for start in range(0, len(reports), 500):
        with session_scope(engine) as session:
            outcomes = ingest_reports(session, principal, reports[start : start + 500])
            patient = patient or str(outcomes[0].patient).removeprefix("Patient/")
    now = utcnow()
    with session_scope(engine) as session:
        create_managed(session, principal, "Goal", {
            "resourceType": "Goal", "lifecycleStatus": "active",
            "description": {"text": "PHQ-9 at or below 9"},
            "subject": {"reference": f"Patient/{patient}"},
            "target": [{"measure": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                        "detailRange": {"high": {"value": 9}}}],
        }, None)  # fmt: skip
        create_managed(session, principal, "CarePlan", {
            "resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": {"reference": f"Patient/{patient}"},
            "period": {"start": (now - timedelta(days=700)).date().isoformat()},
        }, None)  # fmt: skip
        for week in range(0, 104, 2):
            start = now - timedelta(weeks=week, hours=3)
            create_managed(session, principal, "Encounter", {
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "VR"},
                "type": [{"text": "Video consultation"}],
                "subject": {"reference": f"Patient/{patient}"},
                "period": {"start": start.isoformat(),
                           "end": (start + timedelta(minutes=30)).isoformat()},
            }, None)  # fmt: skip
        for rule, severity in (("phq9-item9", "critical"), ("phq9-total", "warning")):
            firing = Firing(rule, severity, f"Bench {rule}", {"value": 1}, {}, "bench")
            apply_firings(session, settings, tenant, patient, [firing], None)
        clinician = Clinician(
            id=secrets.token_hex(8), tenant_id=tenant, email="bench@example.org",
            name="Dr Bench", practitioner=None, password_hash=None,
        )  # fmt: skip
        session.add(clinician)
        session.flush()
        row = open_session(session, tenant, clinician)
        session_id = row.id
    return tenant, patient, session_id


@contextlib.contextmanager
def database(sqlite: bool) -> Iterator[str]:
    """A scratch database URL."""
    if sqlite:
        with tempfile.TemporaryDirectory(prefix="careloop-bench-") as scratch:
            yield f"sqlite:///{scratch}/bench.db"
    else:
        with fresh_database("careloop_bench_page_") as url:
            yield url


def main() -> None:
    """Seed, render, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=200)
    parser.add_argument("--others", type=int, default=50)
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
        _tenant, patient, session_id = seed(engine, settings, args.others)
        if not args.sqlite:  # as autovacuum would have on a live database
            # committed: statistics ANALYZE gathers in a rolled-back transaction are lost
            with engine.begin() as connection:
                connection.execute(text("ANALYZE"))
        backend = "SQLite" if args.sqlite else "PostgreSQL"
        print(
            f"seeded in {time.perf_counter() - began:.1f} s ({backend}, 1 patient with 2 years "
            f"of daily mood/sleep and weekly PHQ-9/GAD-7, {args.others} others)"
        )
        with TestClient(create_app(settings, engine)) as client:
            client.cookies.set(COOKIE, session_id)
            for months in (12, 24, 3):
                url_path = f"/patients/{patient}?months={months}"
                for _ in range(10):
                    assert client.get(url_path).status_code == 200
                times = []
                size = 0
                for _ in range(args.renders):
                    start = time.perf_counter()
                    response = client.get(url_path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, response.status_code
                    size = len(response.content)
                times.sort()
                p50, p99 = fmt_ms(percentile(times, 50)), fmt_ms(percentile(times, 99))
                print(
                    f"/patients/{{id}}?months={months:<2}  n={args.renders}  "
                    f"p50 {p50} ms  p99 {p99} ms  ({size / 1024:.0f} KB)"
                )
            for _ in range(10):
                client.get("/caseload")
            times = []
            for _ in range(max(20, args.renders // 4)):
                start = time.perf_counter()
                assert client.get("/caseload").status_code == 200
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            print(
                f"/caseload ({args.others + 1} patients)  n={len(times)}  "
                f"p50 {fmt_ms(percentile(times, 50))} ms  p99 {fmt_ms(percentile(times, 99))} ms"
            )
        engine.dispose()


if __name__ == "__main__":
    main()
