"""``careloop demo`` shows real alerts; ``careloop serve`` alerts end to end with nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import Engine
from support.clients import Caller, token_for
from support.processes import free_port, inherited_env, wait_healthy
from support.reports import phq9
from support.smtp import SmtpServer
from webhook_receiver import webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.settings import Settings
from careloop.workflows.cli.demo import run_demo
from careloop.workflows.inline import run_pending


def test_demo_produces_the_expected_alerts(settings: Settings, engine: Engine) -> None:
    alerts = run_demo(settings, engine)
    rules = {(a["rule"], a["severity"]) for a in alerts}
    assert ("phq9-item9", "critical") in rules
    assert ("phq9-worsening", "warning") in rules
    assert ("mood-low-streak", "warning") in rules
    assert len({a["patient"] for a in alerts}) == 5  # the two stable patients have none


def test_email_alert_carries_a_link_and_no_phi(
    caller: Caller, engine: Engine, settings: Settings, smtp: SmtpServer
) -> None:
    practitioner = caller.post("/fhir/Practitioner", json={"resourceType": "Practitioner"}).json()
    doctor = f"Practitioner/{practitioner['id']}"
    route = {"recipient": doctor, "channel": "email", "address": "dr@clinic.example"}
    assert caller.post("/v1/notification-routes", json=route).status_code == 201
    patient = caller.post("/v1/symptom-reports", json=phq9("secret-mrn-4711", [0] * 9)).json()
    caller.post(
        "/fhir/CareTeam",
        json={
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": patient["patient"]},
            "participant": [{"member": {"reference": doctor}}],
        },
    )
    caller.post(
        "/v1/symptom-reports",
        json=phq9(
            "secret-mrn-4711",
            [0, 0, 0, 0, 0, 0, 0, 0, 2],
            "2026-11-21T09:30:00Z",
            note="private words",
        ),
    )
    mail_settings = settings.model_copy(update={"smtp_host": smtp.host, "smtp_port": smtp.port})
    run_pending(engine, mail_settings)
    [message] = smtp.collector.emails()
    text = str(message)
    alert = caller.get("/v1/alerts").json()["alerts"][0]
    assert message["To"] == "dr@clinic.example"
    assert f"/alerts/{alert['id']}" in text and "/v1/alerts/" not in text
    for phi in ("secret-mrn-4711", "private words", "44260-8", patient["patient"]):
        assert phi not in text


def test_serve_alone_alerts_end_to_end(tmp_path: Path) -> None:
    """`careloop serve` on a fresh data dir: SQLite, embedded broker and worker, no services."""
    port = free_port()
    env = inherited_env()
    env.update(
        {"CARELOOP_DATA_DIR": str(tmp_path), "CARELOOP_BASE_URL": f"http://127.0.0.1:{port}"}
    )
    cli = [sys.executable, "-m", "careloop"]
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with (
            webhook_receiver(generate_webhook_secret()) as receiver,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
        ):
            wait_healthy(f"http://127.0.0.1:{port}", server)
            subprocess.run(
                [*cli, "notify", "add-webhook", receiver.url, "--secret", receiver.secret],
                env=env,
                check=True,
                capture_output=True,
            )
            created = subprocess.run(
                [*cli, "clients", "create", "app", "--scope", "system/*.cruds"],
                env=env,
                check=True,
                capture_output=True,
            )
            credentials = json.loads(created.stdout)
            token = token_for(http, credentials["client_id"], credentials["client_secret"])
            response = http.post(
                "/v1/symptom-reports",
                json=phq9("e2e", [0] * 8 + [1]),
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 201
            [delivery] = receiver.wait_for(1, timeout=60)
            assert delivery["body"]["rule"] == "phq9-item9"
    finally:
        server.terminate()
        server.wait(timeout=30)
