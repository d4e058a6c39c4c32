"""What chaining the audit trail costs a FHIR read and search (the hot path that audits).

Every ``GET /fhir/{type}/{id}`` and search writes one audit entry; chaining it adds a per-tenant
lock (PostgreSQL advisory lock, SQLite write lock), a read of the chain's head and a SHA-256.
This measures CPU ms and SQL statements per request through the whole ASGI app, with the chain
listener on and then off (off = the audit insert as before this change), on a fresh database.
A report POST writes no audit entry (egress is audited by the worker that sends), so
``bench/ingest_cpu.py`` does not move.

    .venv/bin/python bench/audit_read_cost.py
    .venv/bin/python bench/audit_read_cost.py --sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
from pathlib import Path

import httpx
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fresh_database  # noqa: E402
from ingest_cpu import BASE_URL, SCOPE, Counter, measure, report_body  # noqa: E402

from careloop.services.app import create_app  # noqa: E402
from careloop.services.audit import chain  # noqa: E402
from careloop.services.auth.tokens import issue_token  # noqa: E402
from careloop.services.db import make_engine  # noqa: E402
from careloop.services.migrate import upgrade  # noqa: E402
from careloop.services.settings import Environment, Settings  # noqa: E402
from careloop.services.tenancy.service import create_client  # noqa: E402
from careloop.services.unit_of_work import session_scope  # noqa: E402


def run_all(url: str, args: argparse.Namespace) -> int:
    """Reads and searches with the chain on, then off."""
    settings = Settings(
        environment=Environment.dev,
        database_url=url,
        base_url=BASE_URL,
        secret_key=secrets.token_urlsafe(32),
        relay_after_commit=False,
        rate_limit_api_per_client="",
    )
    engine = make_engine(url, settings.db_pool_size)
    upgrade(engine)
    counter = Counter(engine)
    with session_scope(engine) as session:
        client = create_client(session, "bench", SCOPE, f"bench-{secrets.token_hex(3)}")
    app = create_app(settings, engine)
    token = issue_token(
        settings.secret_key, BASE_URL, client.client_id, client.tenant_id, SCOPE, 3600
    )
    headers = {"Authorization": f"Bearer {token}"}

    async def setup() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            answer = await http.post("/v1/symptom-reports", json=report_body(1, 1), headers=headers)
            return str(answer.json()["patient"]).removeprefix("Patient/")

    patient = asyncio.run(setup())

    async def get_all(count: int, path: str) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
            for _ in range(count):
                answer = await http.get(path, headers=headers)
                if answer.status_code != 200:
                    raise RuntimeError(f"{answer.status_code}")

    def read(count: int) -> None:
        asyncio.run(get_all(count, f"/fhir/Patient/{patient}"))

    def search(count: int) -> None:
        asyncio.run(get_all(count, f"/fhir/Observation?patient={patient}"))

    print(f"{'sqlite' if args.sqlite else 'postgresql'}: {args.rounds} rounds of {args.requests}")
    for state in ("chained", "unchained"):
        if state == "unchained":
            event.remove(OrmSession, "before_flush", chain._chain_new_records)
        for label, run in ((f"read/{state}", read), (f"search/{state}", search)):
            measure(label, run, args.requests, args.rounds, counter)
    engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.sqlite:
        folder = tempfile.mkdtemp(prefix="careloop-bench-")
        return run_all(f"sqlite:///{folder}/bench.db", args)
    with fresh_database() as url:
        return run_all(url, args)


if __name__ == "__main__":
    sys.exit(main())
