"""No PHI reaches any process's output: canary PHI through every path, success and failure.

The API (``careloop serve``), a ``careloop worker`` and a ``careloop beat`` run as real processes
on PostgreSQL and Redis, at DEBUG, with every line they print captured. Unique canary strings go
in as patient identifiers, notes, device names, app report ids, telehealth reasons, webhook
addresses, an EHR client id, a bearer token, consent, risk-signal and group-session ids, model
names, conversation references and facilitators, through accepted reports, alerts, webhooks and
EHR sync, and through the failures: invalid and malformed bodies, an unhandled database error
whose text and parameters hold the canary, a failing webhook receiver, retries on a database
error, a refused EHR write and a task that fails for good. Not one canary may appear, every line
must be JSON, and the unhandled error must be logged with its class and error id. The spans the
processes export (to a collector on loopback), the API's metrics and its error bodies hold none
either.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from ehr_server import Fault, TestEHR
from sqlalchemy import text
from support.clients import token_for
from support.databases import fresh_pg_database
from support.processes import free_port, inherited_env
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.db import make_engine
from careloop.services.migrate import upgrade

CLI = [sys.executable, "-m", "careloop"]
APP_SYSTEM = "https://app.example/patients"
ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 2]
# A database error the API cannot have foreseen: reports whose app_report_id starts "refuse-"
# and alerts of the "doomed" tenant are refused by a trigger that, like PostgreSQL's own errors,
# quotes the offending values (identifiers) in its message.
TRIGGERS = """
CREATE FUNCTION careloop_test_refuse_report() RETURNS trigger AS $$
BEGIN
  IF NEW.app_report_id LIKE 'refuse-%' THEN
    RAISE EXCEPTION 'report % refused', NEW.app_report_id;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER careloop_test_refuse_report BEFORE INSERT ON symptom_report
  FOR EACH ROW EXECUTE FUNCTION careloop_test_refuse_report();
CREATE FUNCTION careloop_test_refuse_alert() RETURNS trigger AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM tenant WHERE id = NEW.tenant_id AND name = 'doomed') THEN
    RAISE EXCEPTION 'no alert for patient %',
      (SELECT value FROM patient_identifier WHERE patient_id = NEW.patient_id LIMIT 1);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER careloop_test_refuse_alert BEFORE INSERT ON alert
  FOR EACH ROW EXECUTE FUNCTION careloop_test_refuse_alert();
"""


def _wait(condition: Callable[[], object], what: str, timeout: float = 60.0) -> Any:
    """Poll ``condition`` until it is truthy (bounded); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@dataclass
class Processes:
    """careloop's processes and the files their stdout and stderr go to."""

    env: dict[str, str]
    outputs: dict[str, Path]
    running: dict[str, subprocess.Popen[bytes]]

    def start(self, name: str, *args: str) -> None:
        """Start ``careloop <args>`` with its output captured in files of its own."""
        out = self.outputs[f"{name}.stdout"] = self.outputs["dir"] / f"{name}.stdout"
        err = self.outputs[f"{name}.stderr"] = self.outputs["dir"] / f"{name}.stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.running[name] = subprocess.Popen(
                [*CLI, *args], env=self.env, stdout=stdout, stderr=stderr
            )

    def cli(self, *args: str) -> Any:
        """Run an admin command and return its JSON output."""
        done = subprocess.run([*CLI, *args], env=self.env, capture_output=True, check=True)
        return json.loads(done.stdout)

    def output(self, name: str) -> str:
        """What a process printed so far, stdout and stderr."""
        return "".join(
            self.outputs[f"{name}.{stream}"].read_text(errors="replace")
            for stream in ("stdout", "stderr")
        )

    def line(self, name: str, *parts: str) -> str | None:
        """The first line ``name`` printed that holds every one of ``parts``."""
        for line in self.output(name).splitlines():
            if all(part in line for part in parts):
                return line
        return None

    def stop(self) -> None:
        """Terminate every process (warm shutdown), killing what does not stop in time."""
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, migrated, with the refusing triggers."""
    with fresh_pg_database("logs") as url:
        engine = make_engine(url, pool_size=1)
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text(TRIGGERS))
        engine.dispose()
        yield url


@contextmanager
def careloop_processes(
    pg_url: str, tmp_path: Path, otel_endpoint: str = ""
) -> Iterator[tuple[Processes, str]]:
    """``careloop serve``, ``careloop worker`` and ``careloop beat`` at DEBUG, on Redis
    (tracing to ``otel_endpoint`` when given)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = inherited_env()
    env.update(
        {
            "CARELOOP_ENVIRONMENT": "test",
            "CARELOOP_SECRET_KEY": "test-secret-" + "x" * 32,
            "CARELOOP_DATABASE_URL": pg_url,
            "CARELOOP_BROKER_URL": "redis://127.0.0.1:6379/0",
            "CARELOOP_QUEUE": f"careloop-logs-{os.getpid()}-{secrets.token_hex(4)}",
            "CARELOOP_DATA_DIR": str(tmp_path / "data"),
            "CARELOOP_BASE_URL": base_url,
            "CARELOOP_LOG_LEVEL": "DEBUG",
            "CARELOOP_EHR_PULL_MINUTES": "0.05",
            "CARELOOP_CONSENT_DEFAULTS": "ehr-sync=permit",  # no consent is recorded here
            "CARELOOP_EHR_TIMEOUT_SECONDS": "2",
            "CARELOOP_EHR_CIRCUIT_FAILURES": "100",
            "CARELOOP_DELIVERY_MAX_ATTEMPTS": "2",
            "CARELOOP_OTEL_ENDPOINT": otel_endpoint,
        }
    )
    outputs_dir = tmp_path / "outputs"
    outputs_dir.mkdir()
    processes = Processes(env, {"dir": outputs_dir}, {})
    try:
        processes.start("api", "serve", "--port", str(port))
        with httpx.Client(base_url=base_url, timeout=10) as http:

            def healthy() -> bool:
                assert processes.running["api"].poll() is None, processes.output("api")
                try:
                    return http.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            _wait(healthy, "the API to listen")
        processes.start("worker", "worker", "--pool", "threads", "--concurrency", "4")
        processes.start("beat", "beat")
        yield processes, base_url
    finally:
        processes.stop()


@dataclass
class App:
    """An app client of one tenant, talking to the running API."""

    http: httpx.Client
    headers: dict[str, str]

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST with the bearer token."""
        return self.http.post(url, headers={**self.headers, **kwargs.pop("headers", {})}, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET with the bearer token."""
        return self.http.get(url, headers=self.headers, **kwargs)


def _app(processes: Processes, http: httpx.Client, tenant: str) -> App:
    credentials = processes.cli(
        "clients", "create", "app", "--scope", "system/*.cruds", "--tenant", tenant
    )
    token = token_for(http, credentials["client_id"], credentials["client_secret"])
    return App(http, {"Authorization": f"Bearer {token}"})


def _report(canary: str, suffix: str, **extra: Any) -> dict[str, Any]:
    return {
        "patient": {"system": APP_SYSTEM, "value": f"{canary}-id-{suffix}"},
        "instrument": "phq-9",
        "answers": ITEM9,
        "effective": "2026-11-20T09:30:00Z",
        "note": f"{canary}-note-{suffix}",
        "device": {"name": f"{canary}-device-{suffix}", "version": "1.0"},
        "app_report_id": f"{canary}-app-{suffix}",
        **extra,
    }


def _db(pg_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def _hook_url(receiver: Receiver, canary: str, which: str) -> str:
    """A webhook address holding canaries in its path and its query string."""
    return receiver.url.replace("/hook", f"/hook/{canary}-{which}") + f"?clinic={canary}-{which}"


def _exercise_failures(app: App, http: httpx.Client, canary: str) -> str:
    """Every way a request can fail, canaries inside; returns the unhandled error's id."""
    bad = _report(canary, "bad", instrument=f"{canary}-instrument")
    assert app.post("/v1/symptom-reports", json=bad).status_code == 422
    out_of_range = _report(canary, "range", answers=[9] * 9)
    assert app.post("/v1/symptom-reports", json=out_of_range).status_code == 422
    future = _report(canary, "when", effective=f"{canary}-not-a-time")
    assert app.post("/v1/symptom-reports", json=future).status_code == 422
    malformed = f'{{"patient": {{"value": "{canary}-malformed"'
    response = app.post(
        "/v1/symptom-reports", content=malformed, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    huge = json.dumps(_report(canary, "huge", note=f"{canary}-huge " * 100_000))
    response = app.post(
        "/v1/symptom-reports", content=huge, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    batch = {"reports": [_report(canary, "b1"), _report(canary, "b2", answers=[1])]}
    assert app.post("/v1/symptom-reports/batch", json=batch).status_code in (200, 207)
    assert app.get(f"/fhir/Patient/{canary}-unknown").status_code in (400, 404)
    assert app.get(f"/v1/{canary}-nowhere?q={canary}").status_code == 404
    unknown_token = {"Authorization": f"Bearer {canary}-token"}
    assert http.get("/fhir/Patient", headers=unknown_token).status_code == 401
    refused = _report(canary, "refused", app_report_id=f"refuse-{canary}-app")
    response = app.post("/v1/symptom-reports", json=refused)
    assert response.status_code == 500
    assert canary not in response.text
    diagnostics = response.json()["issue"][0]["diagnostics"]
    return str(diagnostics.rsplit(" ", 1)[-1])


def _exercise_newest(app: App, canary: str) -> None:
    """Consents, risk signals and group sessions with canaries in their free-ish fields
    (identifiers, app ids, conversation reference, model, facilitator), accepted and refused;
    no answer may carry a canary it was not given as an identifier to echo."""
    patient = {"system": APP_SYSTEM, "value": f"{canary}-id-consent"}
    consent = {
        "patient": patient,
        "decision": "deny",
        "purpose": "research-export",
        "app_consent_id": f"{canary}-consent",
    }
    created = app.post("/v1/consents", json=consent)
    assert created.status_code == 201, created.text
    assert app.post(f"/v1/consents/{created.json()['id']}/revoke").status_code == 200
    in_force = app.get(
        "/v1/consents", params={"patient.system": APP_SYSTEM, "patient.value": patient["value"]}
    )
    assert in_force.status_code == 200 and canary not in in_force.text
    signal = {
        "patient": {"system": APP_SYSTEM, "value": f"{canary}-id-signal"},
        "source": "chatbot",
        "category": "self-harm",
        "level": "high",
        "model": {"name": f"{canary}-model", "version": f"{canary}-version"},
        "detected": "2026-11-20T09:30:00Z",
        "conversation": f"{canary}-conversation",
        "app_signal_id": f"{canary}-signal",
    }
    accepted = app.post("/v1/risk-signals", json=signal)
    assert accepted.status_code == 201, accepted.text
    assert canary not in app.get(accepted.headers["location"].split("127.0.0.1")[-1]).text
    group = {
        "app_session_id": f"{canary}-group",
        "facilitator": {"system": f"https://{canary}.example/staff", "value": f"{canary}-dr"},
        "modality": "video",
        "start": "2026-11-24T17:00:00Z",
        "end": "2026-11-24T18:00:00Z",
        "participants": [
            {
                "patient": {"system": APP_SYSTEM, "value": f"{canary}-id-g1"},
                "attendance": "attended",
            },
            {
                "patient": {"system": APP_SYSTEM, "value": f"{canary}-id-g2"},
                "attendance": "no-show",
            },
        ],
    }
    held = app.post("/v1/group-sessions", json=group)
    assert held.status_code == 201, held.text
    assert canary not in held.text
    refusals = [
        ("/v1/consents", {**consent, "purpose": f"{canary}-purpose"}),
        ("/v1/consents", {**consent, "note": f"{canary}-note"}),
        ("/v1/consents", {**consent, "app_consent_id": f"{canary}-consent", "decision": "permit"}),
        ("/v1/risk-signals", {**signal, "conversation": f"{canary} said something"}),
        ("/v1/risk-signals", {**signal, "text": f"{canary}-words"}),
        ("/v1/risk-signals", {**signal, "model": {"name": f"{canary}-m" * 100, "version": "1"}}),
        ("/v1/group-sessions", {**group, "modality": "video", "topic": f"{canary}-topic"}),
        ("/v1/group-sessions", {**group, "participants": [group["participants"][0]] * 2}),
        ("/v1/group-sessions", {**group, "modality": "phone"}),  # 409: another session
    ]
    for url, body in refusals:
        response = app.post(url, json=body)
        assert 400 <= response.status_code < 500, (url, response.text)
        assert canary not in response.text, (url, response.text)
    for url in (
        f"/v1/consents/{canary}-nope/revoke",
        f"/v1/risk-signals/{canary}-nope",
        f"/v1/group-sessions/{canary}-nope",
    ):
        response = app.post(url) if url.endswith("revoke") else app.get(url)
        # The 404 names the id the caller put in its own URL (as the FHIR API's do); the logs
        # (checked below) never do.
        assert response.status_code == 404, (url, response.text)
    unknown = app.get(
        "/v1/consents", params={"patient.system": APP_SYSTEM, "patient.value": f"{canary}-who"}
    )
    assert unknown.status_code == 200 and canary not in unknown.text


class Collector:
    """An OTLP/HTTP traces endpoint on loopback that keeps every request body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                owner.bodies.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _lines(output: str, name: str) -> list[dict[str, Any]]:
    records = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{name} printed a line that is not JSON: {line[:300]!r}")
        assert {"time", "level", "logger", "event"} <= record.keys(), line[:300]
        records.append(record)
    return records


def test_no_canary_reaches_any_process_output(pg_url: str, tmp_path: Path) -> None:
    canary = f"CANARY{uuid.uuid4().hex[:16]}"
    with ExitStack() as stack:
        ehr = stack.enter_context(TestEHR())
        good = stack.enter_context(webhook_receiver(generate_webhook_secret()))
        failing = stack.enter_context(webhook_receiver(generate_webhook_secret()))
        failing.status = 500
        collector = Collector()
        stack.callback(collector.close)  # after the processes stop (and flush their spans)
        processes, base_url = stack.enter_context(
            careloop_processes(pg_url, tmp_path, collector.url)
        )
        http = stack.enter_context(httpx.Client(base_url=base_url, timeout=30))

        # Tenant "clinic": an EHR connected, another whose client id it refuses, two webhooks.
        tenant = "clinic"
        scopes = "system/*.cruds"
        processes.cli(
            "ehr", "add", "hospital", "--fhir-base-url", ehr.base_url,
            "--client-id", "careloop-clinic", "--scope", scopes, "--tenant", tenant,
        )  # fmt: skip
        processes.cli(
            "ehr", "add", "refusing", "--fhir-base-url", ehr.base_url,
            "--client-id", f"{canary}-client", "--scope", scopes, "--tenant", tenant,
        )  # fmt: skip
        ehr.register_client(
            "careloop-clinic", scopes, jwks=http.get("/.well-known/jwks.json").json()
        )
        for receiver, which in ((good, "good"), (failing, "failing")):
            processes.cli(
                "notify", "add-webhook", _hook_url(receiver, canary, which),
                "--secret", receiver.secret, "--tenant", tenant,
            )  # fmt: skip
        ehr.seed(
            {
                "resourceType": "Patient",
                "identifier": [{"system": APP_SYSTEM, "value": f"{canary}-id-ok"}],
                "active": True,
            }
        )
        app = _app(processes, http, tenant)
        ehr.inject(Fault.HTTP_500, count=1, method="POST", path_prefix="/fhir")

        # Success paths: a critical report, a telehealth session, searches by identifier.
        response = app.post("/v1/symptom-reports", json=_report(canary, "ok"))
        assert response.status_code == 201, response.text
        session = {
            "patient": {"system": APP_SYSTEM, "value": f"{canary}-id-ok"},
            "practitioner": {"system": "https://clinic.example/staff", "value": f"{canary}-dr"},
            "status": "planned",
            "platform": f"{canary}-platform",
            "reason": f"{canary}-reason",
        }
        assert app.post("/v1/telehealth-sessions", json=session).status_code == 201
        search = app.get("/fhir/Patient", params={"identifier": f"{APP_SYSTEM}|{canary}-id-ok"})
        assert search.status_code == 200 and search.json()["total"] == 1

        error_id = _exercise_failures(app, http, canary)
        _exercise_newest(app, canary)
        scrape = http.get("/metrics")  # loopback, test environment: no token needed
        assert scrape.status_code == 200 and "careloop_http_requests_total" in scrape.text
        assert canary.lower() not in scrape.text.lower(), "a metric label carries PHI"

        # Tenant "doomed": its alerts hit a database error in the worker, which retries.
        doomed = _app(processes, http, "doomed")
        assert doomed.post("/v1/symptom-reports", json=_report(canary, "doomed")).status_code == 201

        deliveries = good.wait_for(1, timeout=60)
        assert deliveries[0]["body"]["rule"] == "phq9-item9"
        _wait(lambda: ehr.resources("Observation"), "the report in the EHR")
        _wait(
            lambda: _db(pg_url, "SELECT 1 FROM notification WHERE status = 'failed'"),
            "the failing webhook to give up",
        )
        _wait(
            lambda: _db(pg_url, "SELECT 1 FROM ehr_failure"),
            "the refused EHR write",
        )
        _wait(
            lambda: _db(pg_url, "SELECT 1 FROM dead_task WHERE task = 'ehr.pull'"),
            "the pull from the refusing EHR to fail for good",
        )
        _wait(
            lambda: processes.line("worker", "observation.evaluate_urgent", "retry: Retry in"),
            "the worker to retry the doomed alert",
        )
    assert collector.bodies, "no spans were exported"
    assert not any(canary.encode() in body for body in collector.bodies), "a span carries PHI"
    names = ("api", "worker", "beat")
    outputs = {name: processes.output(name) for name in names}
    for name, output in outputs.items():
        assert canary.lower() not in output.lower(), f"{name} printed PHI"
        _lines(output, name)
    api_errors = [r for r in _lines(outputs["api"], "api") if r.get("error_id") == error_id]
    assert len(api_errors) == 1
    assert api_errors[0]["level"] == "error"
    assert "ProgrammingError(RaiseException)" in api_errors[0]["event"]
    assert "Traceback" not in "".join(outputs.values())
    worker = _lines(outputs["worker"], "worker")
    assert any("ehr.pull" in r["event"] and "SmartError" in r["event"] for r in worker)
    assert any(r["logger"] == "httpx" and "/fhir/Patient" in r["event"] for r in worker)
    assert any(r["logger"] == "celery.beat" for r in _lines(outputs["beat"], "beat"))
