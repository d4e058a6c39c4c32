"""CDS Hooks card latency: ``POST /cds-services/careloop-patient-view`` for a patient with two
years of daily reports, as an EHR calls it (a fresh signed JWT per call).

Seeds a fresh PostgreSQL database in this process (careloop's app in-process, the rules run
inline): one synthetic patient with two years of daily mood and sleep-duration reports, weekly
PHQ-9 and GAD-7, and a last PHQ-9 with item 9 positive, so an open critical alert. Then runs
``careloop serve`` on loopback, registers this process as a CDS client (an ES384 key whose JWKS
a threaded ``http.server`` serves on loopback) and times ``--requests`` card calls, one at a
time over one keep-alive connection; signing happens before the clock starts. Prints p50, p95,
p99 and max in ms (the issue's target: p99 under 100 ms). The database is dropped at the end.

    .venv/bin/python bench/cds_card.py                 # 500 calls
    .venv/bin/python bench/cds_card.py --requests 2000
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import (
    HOST,
    Server,
    careloop_cmd,
    fmt_ms,
    free_port,
    fresh_database,
    percentile,
    raise_keyboard_interrupt,
)
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey

from careloop.services.cds.clients import add_client
from careloop.services.common.egress import destination_policy
from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import Environment, Settings
from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

APP_SYSTEM = "https://app.example/patients"
SERVICE = "/cds-services/careloop-patient-view"
DAYS = 730


def _reports(value: str, rng: random.Random) -> list[dict[str, Any]]:
    """Two years of a synthetic patient's reports, oldest first; the last PHQ-9 has item 9 = 1."""
    patient = {"system": APP_SYSTEM, "value": value}
    start = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    start -= timedelta(days=DAYS)
    reports: list[dict[str, Any]] = []
    for day in range(DAYS):
        at = start + timedelta(days=day)
        for instrument, reading in (
            ("mood", rng.randint(4, 8)),
            ("sleep-duration", round(rng.uniform(5.5, 8.5), 1)),
        ):
            reports.append(
                {
                    "patient": patient,
                    "instrument": instrument,
                    "value": reading,
                    "effective": at.isoformat(),
                }
            )
        if day % 7 == 0:
            phq = [rng.randint(0, 2) for _ in range(8)] + [0]
            gad = [rng.randint(0, 2) for _ in range(7)]
            for instrument, answers in (("phq-9", phq), ("gad-7", gad)):
                reports.append(
                    {
                        "patient": patient,
                        "instrument": instrument,
                        "answers": answers,
                        "effective": (at + timedelta(hours=1)).isoformat(),
                    }
                )
    last = start + timedelta(days=DAYS, hours=2)
    reports.append(
        {
            "patient": patient,
            "instrument": "phq-9",
            "answers": [1, 1, 1, 1, 0, 1, 0, 0, 1],
            "effective": last.isoformat(),
        }
    )
    return reports


def seed(settings: Settings, value: str) -> int:
    """Post the patient's reports through the app API and run the rules; reports stored."""
    engine = make_engine(settings.resolved_database_url, 4)
    upgrade(engine)
    app = create_app(settings, engine)
    with session_scope(engine) as session:
        client = create_client(session, "bench-seed", "system/*.cruds", "default")
    assert client.client_secret is not None
    reports = _reports(value, random.Random(9))
    with TestClient(app, base_url=settings.base_url) as http:
        form = {
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        token = http.post("/oauth/token", data=form).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for start in range(0, len(reports), 500):
            answer = http.post(
                "/v1/symptom-reports/batch", json=reports[start : start + 500], headers=headers
            )
            if answer.status_code >= 300:
                raise RuntimeError(f"seeding: {answer.status_code} {answer.text[:300]}")
    run_pending(engine, settings, rounds=50)
    engine.dispose()
    return len(reports)


class Jwks:
    """This process's ES384 key, its JWKS served on loopback."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-384", parameters={"kid": "bench-1"}, private=True)
        body = orjson.dumps({"keys": [self.key.as_dict(private=False, alg="ES384")]})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self._httpd.server_address[1]}/jwks.json"

    @contextmanager
    def serving(self) -> Iterator[Jwks]:
        """Serve the JWKS until the block ends."""
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()

    def bearer(self, iss: str, aud: str) -> str:
        """A fresh signed JWT for one call."""
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "iat": now, "exp": now + 240, "jti": uuid.uuid4().hex}
        header = {"alg": "ES384", "typ": "JWT", "kid": "bench-1"}
        return "Bearer " + jwt.encode(header, claims, self.key, algorithms=["ES384"])


def _call(http: httpx.Client, jwks: Jwks, iss: str, base_url: str, value: str) -> float:
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": "ehr-bench-1"},
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": "ehr-bench-1",
                "identifier": [{"system": APP_SYSTEM, "value": value}],
            }
        },
    }
    headers = {"Authorization": jwks.bearer(iss, base_url + SERVICE)}
    started = time.perf_counter()
    answer = http.post(SERVICE, json=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    cards = answer.json().get("cards") if answer.status_code == 200 else None
    if not cards or cards[0]["indicator"] != "critical":
        raise RuntimeError(f"unexpected answer {answer.status_code}: {answer.text[:300]}")
    return elapsed


def main() -> None:
    """Seed, serve, time the card calls, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    logs = Path(tempfile.mkdtemp(prefix="careloop-bench-cds-"))
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    value = f"bench-{secrets.token_hex(4)}"
    with fresh_database("careloop_cds_") as db_url:
        env = {
            **os.environ,
            "CARELOOP_DATABASE_URL": db_url,
            "CARELOOP_DATA_DIR": str(logs / "data"),
            "CARELOOP_BASE_URL": base_url,
            "CARELOOP_SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
            "CARELOOP_RATE_LIMIT_API_PER_CLIENT": "",
            "CARELOOP_RATE_LIMIT_TOKEN_PER_CLIENT": "",
        }
        settings = Settings(
            environment=Environment.dev,
            database_url=db_url,
            data_dir=logs / "data",
            base_url=base_url,
            secret_key=env["CARELOOP_SECRET_KEY"],
            relay_after_commit=False,
        )
        began = time.perf_counter()
        stored = seed(settings, value)
        print(f"seeded {stored} reports (rules run) in {time.perf_counter() - began:.1f} s")
        jwks = Jwks()
        iss = f"https://ehr-{secrets.token_hex(3)}.example/cds"
        engine = make_engine(db_url, 1)
        with session_scope(engine) as session:
            add_client(session, iss, jwks.url, destinations=destination_policy(settings))
        engine.dispose()
        serve = ("serve", "--host", HOST, "--port", str(port), "--workers", "1")
        api = Server("cds-api", careloop_cmd(*serve), env, port, logs)
        with jwks.serving():
            try:
                api.start()
                api.wait_ready(90)
                with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http:
                    for _ in range(args.warmup):
                        _call(http, jwks, iss, base_url, value)
                    times = sorted(
                        _call(http, jwks, iss, base_url, value) for _ in range(args.requests)
                    )
            except BaseException:
                print(f"--- api log tail ---\n{api.log_tail()}", file=sys.stderr)
                raise
            finally:
                api.stop()
    print(f"card requests: {len(times)} (after {args.warmup} warm-up), one at a time")
    for label, pct in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        print(f"  {label}: {fmt_ms(percentile(times, pct))} ms")
    print(f"  max: {fmt_ms(times[-1])} ms   (target: p99 < 100 ms)")


if __name__ == "__main__":
    main()
