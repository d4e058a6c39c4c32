"""Storage benchmark: the disk and WAL one PHQ-9 report costs PostgreSQL, table by table.

For sizing a deployment (``deploy/README.md``, README "At internet scale"): on a fresh
PostgreSQL database, ingest ``--reports`` routine PHQ-9 reports for ``--patients`` patients
through ``ingest_reports`` (the service the app API runs, in batches of ``--batch``), then print
each table's bytes per report (heap, indexes and TOAST, after VACUUM ANALYZE) and the WAL the
ingest wrote per report. Evaluation is not run: it adds no row for a routine reading that opens
no alert; the outbox rows are deleted after ``CARELOOP_OUTBOX_RETENTION_DAYS``.

    .venv/bin/python bench/storage_per_report.py
    .venv/bin/python bench/storage_per_report.py --reports 50000 --patients 5000
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_database  # noqa: E402

from careloop.services.auth.scopes import Grant, parse_scopes  # noqa: E402
from careloop.services.auth.tokens import Principal  # noqa: E402
from careloop.services.db import make_engine, utcnow  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.reports.schemas import SymptomReportIn  # noqa: E402
from careloop.services.reports.service import ingest_reports  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402

SYSTEM = "https://bench.careloop.example/patients"
SCOPE = "system/*.cruds"


def report_body(n: int, patients: int) -> dict[str, Any]:
    """A distinct routine PHQ-9 report (patient ``n % patients``)."""
    return {
        "patient": {"system": SYSTEM, "value": f"p-{n % patients}"},
        "instrument": "phq-9",
        "effective": (utcnow() - timedelta(days=60) + timedelta(seconds=n)).isoformat(),
        "answers": [n % 3, 1, 0, 1, 0, 1, 0, 1, 0],
        "app_report_id": f"r-{n}",
    }


def _wal_lsn(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


def _sizes(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int, int]]:
    """(table, rows, heap+TOAST bytes, index bytes) of every table in the public schema."""
    rows = conn.execute(
        """
        SELECT c.relname, c.reltuples::bigint,
               pg_table_size(c.oid), pg_indexes_size(c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r'
        ORDER BY pg_total_relation_size(c.oid) DESC
        """
    ).fetchall()
    return [(str(r[0]), max(int(r[1]), 0), int(r[2]), int(r[3])) for r in rows]


def run(url: str, args: argparse.Namespace) -> None:
    """Ingest and print the figures for the database at ``url``."""
    engine = make_engine(url, 5)
    upgrade(engine)
    with session_scope(engine) as session:
        client = create_client(session, "bench", SCOPE, f"bench-{secrets.token_hex(3)}")
    principal = Principal(
        client.client_id, client.tenant_id, SCOPE, Grant(tuple(parse_scopes(SCOPE))), 0
    )
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq, autocommit=True) as conn:
        wal_before = _wal_lsn(conn)
    started = time.perf_counter()
    for start in range(0, args.reports, args.batch):
        reports = [
            SymptomReportIn.model_validate(report_body(n, args.patients))
            for n in range(start, min(start + args.batch, args.reports))
        ]
        with session_scope(engine) as session:
            ingest_reports(session, principal, reports)
    seconds = time.perf_counter() - started
    with psycopg.connect(libpq, autocommit=True) as conn:
        wal = _wal_lsn(conn) - wal_before
        conn.execute("VACUUM ANALYZE")
        sizes = _sizes(conn)
    engine.dispose()
    n = args.reports
    print(
        f"{n:,} PHQ-9 reports for {args.patients:,} patients in {seconds:.1f} s "
        f"(batches of {args.batch}); bytes per report after VACUUM ANALYZE:"
    )
    print(f"  {'table':<28} {'rows/report':>11} {'heap+toast':>11} {'indexes':>9} {'total':>9}")
    total_heap = total_index = 0
    for table, rows, heap, index in sizes:
        if rows == 0 and heap + index < 64 * 1024:
            continue
        total_heap += heap
        total_index += index
        print(
            f"  {table:<28} {rows / n:11.2f} {heap / n:11,.0f} {index / n:9,.0f} "
            f"{(heap + index) / n:9,.0f}"
        )
    print(
        f"  {'all tables':<28} {'':>11} {total_heap / n:11,.0f} {total_index / n:9,.0f} "
        f"{(total_heap + total_index) / n:9,.0f}"
    )
    print(f"WAL written by the ingest: {wal / n:,.0f} bytes per report ({wal / 2**20:,.1f} MiB)")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run on a scratch database, drop it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=500, help="reports per unit of work")
    args = parser.parse_args(argv)
    with fresh_database("careloop_storage_") as url:
        run(url, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
