"""``careloop serve`` alone (SQLite, embedded broker and worker) completes an export."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from support.clients import token_for
from support.processes import free_port, inherited_env, wait_healthy
from support.reports import phq9

DEADLINE_SECONDS = 90


def test_serve_alone_completes_an_export_a_chunk_per_task(tmp_path: Path) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    env = inherited_env()
    env.update(
        {
            "CARELOOP_DATA_DIR": str(tmp_path),
            "CARELOOP_BASE_URL": origin,
            "CARELOOP_CONSENT_DEFAULTS": "ehr-sync=permit",
            "CARELOOP_BULK_EXPORT_FILE_RESOURCES": "1",
            "CARELOOP_BULK_EXPORT_RETRY_AFTER_SECONDS": "1",
        }
    )
    cli = [sys.executable, "-m", "careloop"]
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=origin, timeout=10) as http:
            wait_healthy(origin, server)
            created = subprocess.run(
                [*cli, "clients", "create", "exporter", "--scope", "system/*.cruds"],
                env=env,
                check=True,
                capture_output=True,
            )
            credentials = json.loads(created.stdout)
            token = token_for(http, credentials["client_id"], credentials["client_secret"])
            auth = {"Authorization": f"Bearer {token}"}
            for value in ("serve-1", "serve-2"):
                response = http.post("/v1/symptom-reports", json=phq9(value), headers=auth)
                assert response.status_code == 201, response.text
            kickoff = http.get(
                "/fhir/$export",
                params={"_type": "Patient"},
                headers={**auth, "Prefer": "respond-async"},
            )
            assert kickoff.status_code == 202, kickoff.text
            status = kickoff.headers["content-location"]
            deadline = time.monotonic() + DEADLINE_SECONDS
            polled = http.get(status, headers=auth)
            while polled.status_code == 202:  # a client's polling, as the spec has it
                assert time.monotonic() < deadline, polled.headers.get("x-progress")
                time.sleep(float(polled.headers["retry-after"]))
                polled = http.get(status, headers=auth)
            assert polled.status_code == 200, polled.text
            output = polled.json()["output"]
            assert [(o["type"], o["count"]) for o in output] == [("Patient", 1), ("Patient", 1)]
            lines = [http.get(o["url"], headers=auth).text for o in output]
            assert all(line.count("\n") == 1 and '"Patient"' in line for line in lines)
    finally:
        server.terminate()
        server.wait(timeout=30)
