"""FHIR search as a tenant grows: code+date and patient-scoped searches at 10k, 100k, 1M resources.

Loads one tenant on a fresh PostgreSQL database straight into the store tables (COPY, in the shape
``ResourceStore.create_many`` writes: one ``fhir_resource`` row and its ``search_token`` rows per
resource), runs VACUUM ANALYZE (as autovacuum would on a live database), then times in-process
(FastAPI TestClient, bearer token) the first page and a later page (following ``next`` links) of:

- ``Observation?code=http://loinc.org|44261-6&date=ge2026-01-01&_count=50`` (about a third of the
  Observations carry the code and a third of those fall in 2026),
- ``Observation?patient=<p>&_count=50`` and ``...&_sort=-date`` for a patient holding 1% of the
  Observations (so their history grows with the tenant).

Prints p50/p99 per search and size, and the EXPLAIN ANALYZE of each page query with ``--explain``.
Target: first and later pages under 20 ms p50 at 1M resources.

    .venv/bin/python bench/search_growth.py                       # 10k, 100k, 1M
    .venv/bin/python bench/search_growth.py --sizes 10000,100000 --runs 50
"""

from __future__ import annotations

import argparse
import io
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import orjson
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_ms, fresh_database, percentile  # noqa: E402

from careloop.services.db import make_engine  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.settings import Environment, Settings  # noqa: E402
from careloop.services.store.search import parse_search, run_search  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402
from careloop.workflows.web import create_app  # noqa: E402

LOINC = "http://loinc.org"
CODES = (("44261-6", "PHQ-9 total"), ("70274-6", "GAD-7 total"), ("93038-8", "Sleep"))
START = datetime(2024, 1, 1, tzinfo=UTC)
SPAN_DAYS = 3 * 365
PER_PATIENT = 100
HEAVY = "heavy-patient"


def _observation(rid: str, patient: str, code: tuple[str, str], when: datetime) -> str:
    return orjson.dumps(
        {
            "resourceType": "Observation", "id": rid, "status": "final",
            "meta": {"versionId": "1", "lastUpdated": "2026-12-01T00:00:00.000Z"},
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "survey"}]}],
            "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": when.isoformat(),
            "valueInteger": 7,
        }
    ).decode()  # fmt: skip


def load(url: str, tenant: str, begin: int, end: int) -> None:
    """Add resources number ``begin`` .. ``end - 1`` (1 Patient in 100, the rest Observations)."""
    conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM fhir_resource").fetchone()
    seq = int(row[0]) if row else 0
    now = datetime(2026, 12, 1, tzinfo=UTC)
    resources, tokens = io.StringIO(), io.StringIO()
    cat = "http://terminology.hl7.org/CodeSystem/observation-category"
    for n in range(begin, end):
        seq += 1
        if n % PER_PATIENT == 0:
            rid = f"p{n // PER_PATIENT}"
            content = orjson.dumps({"resourceType": "Patient", "id": rid}).decode()
            resources.write(f"{seq}\t{tenant}\tPatient\t{rid}\t1\t{now}\t{rid}\t\\N\t\\N\t")
            resources.write(content.replace("\\", "\\\\") + "\n")
            tokens.write(f"{seq}\t{tenant}\tPatient\tidentifier\tbench\t{rid}\n")
            continue
        rid = f"o{n}"
        patient = HEAVY if n % 100 == 1 else f"p{n // PER_PATIENT}"
        code = CODES[n % 3]
        when = START + timedelta(minutes=(n * 7919) % (SPAN_DAYS * 1440))
        content = _observation(rid, patient, code, when)
        resources.write(f"{seq}\t{tenant}\tObservation\t{rid}\t1\t{now}\t{patient}\t{when}\t")
        resources.write(f"{when}\t" + content.replace("\\", "\\\\") + "\n")
        tokens.write(f"{seq}\t{tenant}\tObservation\tcode\t{LOINC}\t{code[0]}\n")
        tokens.write(f"{seq}\t{tenant}\tObservation\tcategory\t{cat}\tsurvey\n")
        tokens.write(f"{seq}\t{tenant}\tObservation\tstatus\t\tfinal\n")
    with conn.cursor() as cur:
        columns = "seq, tenant_id, resource_type, id, version_id, last_updated, patient_id, "
        columns += "date_lo, date_hi, content"
        with cur.copy(f"COPY fhir_resource ({columns}) FROM STDIN") as copy:
            copy.write(resources.getvalue())
        columns = "resource_seq, tenant_id, resource_type, param, system, code"
        with cur.copy(f"COPY search_token ({columns}) FROM STDIN") as copy:
            copy.write(tokens.getvalue())
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('fhir_resource', 'seq'), "
            "(SELECT max(seq) FROM fhir_resource))"
        )
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE fhir_resource")  # as autovacuum would after a bulk load
    conn.execute("VACUUM ANALYZE search_token")
    conn.close()


def _next(bundle: dict[str, object]) -> str | None:
    links = bundle.get("link")
    assert isinstance(links, list)
    return next((str(k["url"]) for k in links if k["relation"] == "next"), None)


def timed(client: TestClient, headers: dict[str, str], path: str, runs: int) -> list[str]:
    """p50/p99 of the first page and of page 3 (reached by ``next`` links)."""
    first = client.get(path, headers=headers)
    assert first.status_code == 200, first.text
    later = path
    bundle = first.json()
    for _ in range(2):
        link = _next(bundle)
        if link is None:
            break
        later = link.removeprefix("http://testserver")
        bundle = client.get(later, headers=headers).json()
    figures = []
    for label, url in (("first", path), ("page 3", later)):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            response = client.get(url, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text
        times.sort()
        figures.append(
            f"{label} p50 {fmt_ms(percentile(times, 50))} p99 {fmt_ms(percentile(times, 99))}"
        )
    total = first.json().get("total", "omitted")
    return [*figures, f"total {total}"]


def store_timed(engine: Engine, tenant: str, query: str, runs: int) -> str:
    """p50 of the store's part alone (parse and run the search, no HTTP, JSON or audit) for the
    first page and page 3."""
    params = [(k, v) for k, v in parse_qsl(query)]
    figures = []
    with Session(engine) as session:
        cursor_key = "bench"
        request = parse_search(tenant, "Observation", params, 50, 500, cursor_key=cursor_key)
        page = run_search(session, tenant, request)
        later = params
        for _ in range(2):
            if page.next_token is None:
                break
            later = [*params, ("_page", page.next_token)]
            request = parse_search(tenant, "Observation", later, 50, 500, cursor_key=cursor_key)
            page = run_search(session, tenant, request)
        session.rollback()
        for label, wanted in (("first", params), ("page 3", later)):
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                request = parse_search(
                    tenant, "Observation", wanted, 50, 500, cursor_key=cursor_key
                )
                run_search(session, tenant, request)
                session.rollback()
                times.append((time.perf_counter() - start) * 1000)
            times.sort()
            figures.append(f"{label} {fmt_ms(percentile(times, 50))}")
    return "store p50 " + " / ".join(figures)


def log_plans(engine: Engine, min_ms: int) -> None:
    """Print the plan (EXPLAIN ANALYZE, by auto_explain) of statements ``engine`` runs that take
    at least ``min_ms``."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: psycopg.Connection[object], _record: object) -> None:
        dbapi_connection.add_notice_handler(lambda d: print("    " + str(d.message_primary)))
        with dbapi_connection.cursor() as cur:
            cur.execute("LOAD 'auto_explain'")
            cur.execute(f"SET auto_explain.log_min_duration = {int(min_ms)}")
            cur.execute("SET auto_explain.log_analyze = on")
            cur.execute("SET auto_explain.log_buffers = on")
            cur.execute("SET client_min_messages = log")
        dbapi_connection.commit()


def main() -> None:
    """Load, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--explain", action="store_true", help="log the page queries' plans")
    parser.add_argument("--slow", type=int, default=-1, help="log plans taking this many ms")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with fresh_database("careloop_bench_search_") as url, tempfile.TemporaryDirectory() as data:
        engine = make_engine(url, pool_size=5)
        upgrade(engine)
        if args.explain or args.slow >= 0:
            engine.dispose()
            log_plans(engine, max(0, args.slow))
        settings = Settings(
            environment=Environment.test, database_url=url, data_dir=Path(data),
            secret_key="bench-" + secrets.token_urlsafe(32), base_url="http://testserver",
            relay_after_commit=False, rate_limit_api_per_client="",
        )  # fmt: skip
        with session_scope(engine) as session:
            new = create_client(session, "bench", "system/*.cruds", "bench")
        with TestClient(create_app(settings, engine)) as client:
            form = {"grant_type": "client_credentials", "client_id": new.client_id,
                    "client_secret": new.client_secret}  # fmt: skip
            loaded = 0
            searches = {
                "code+date": urlencode([("code", f"{LOINC}|44261-6"), ("date", "ge2026-01-01")]),
                "patient": urlencode([("patient", f"Patient/{HEAVY}")]),
                "patient -date": urlencode([("patient", f"Patient/{HEAVY}"), ("_sort", "-date")]),
            }
            for size in sizes:
                began = time.perf_counter()
                for start in range(loaded, size, 50_000):
                    load(url, new.tenant_id, start, min(size, start + 50_000))
                loaded = size
                print(f"{size:,} resources (loaded in {time.perf_counter() - began:.1f} s)")
                token = client.post("/oauth/token", data=form).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}  # a fresh one: loads take minutes
                for name, query in searches.items():
                    runs = 8 if args.explain else args.runs
                    query += "&_count=50"
                    figures = timed(client, headers, f"/fhir/Observation?{query}", runs)
                    figures.append(store_timed(engine, new.tenant_id, query, runs))
                    print(f"  {name:<14} " + "  ".join(figures) + " (ms)")
        engine.dispose()


if __name__ == "__main__":
    main()
