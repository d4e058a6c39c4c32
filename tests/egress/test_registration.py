"""Registering a destination checks it: webhook routes and EHR connections, API and CLI.

careloop runs here in production mode (the rules careloop is deployed with); the suite's other
tests run in test mode, which allows loopback receivers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller

from careloop.services.settings import Environment, Settings
from careloop.workflows.web import create_app

INTERNAL = [
    "https://127.0.0.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.5/hook",
    "https://172.20.1.1/hook",
    "https://192.168.0.10/hook",
    "https://100.64.3.4/hook",
    "https://[::1]/hook",
    "https://[fd00::5]/hook",
    "https://[::ffff:169.254.169.254]/hook",
    "https://0.0.0.0/hook",
    "https://2130706433/hook",
    "https://0x7f.1/hook",
    "https://metadata.google.internal/computeMetadata/v1/",
    "http://93.184.215.14/hook",  # public, but not https
]
SECRET_KEY = "production-secret-" + "z" * 32


def _production(settings: Settings, allow: str = "") -> Settings:
    return settings.model_copy(
        update={
            "environment": Environment.production,
            "secret_key": SECRET_KEY,
            "egress_allow": allow,
        }
    )


@pytest.fixture(scope="module")
def production_api(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    app = create_app(_production(settings, allow="10.9.0.0/16, hooks.hospital.example"), engine)
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def clinician(production_api: TestClient, engine: Engine) -> Caller:
    return make_caller(production_api, engine, scope="system/*.cruds")


def _route(caller: Caller, address: str) -> object:
    return caller.post(
        "/v1/notification-routes",
        json={"recipient": "oncall", "channel": "webhook", "address": address},
    )


@pytest.mark.parametrize("address", INTERNAL)
def test_a_webhook_route_to_an_internal_address_is_refused(clinician: Caller, address: str) -> None:
    response = _route(clinician, address)
    assert response.status_code == 422, response.text  # type: ignore[attr-defined]
    outcome = response.json()  # type: ignore[attr-defined]
    assert outcome["resourceType"] == "OperationOutcome"
    [issue] = outcome["issue"]
    assert issue["expression"] == ["address"]
    assert "refused" in issue["diagnostics"]


@pytest.mark.parametrize(
    "address",
    [
        "https://93.184.215.14/hook",  # public
        "https://10.9.4.2/hook",  # in an allow-listed network
        "https://hooks.hospital.example/careloop",  # an allow-listed name (resolved nowhere)
    ],
)
def test_public_and_allow_listed_webhooks_are_accepted(clinician: Caller, address: str) -> None:
    response = _route(clinician, address)
    assert response.status_code == 201, response.text  # type: ignore[attr-defined]
    assert response.json()["secret"].startswith("whsec_")  # type: ignore[attr-defined]


def test_an_ehr_connection_to_an_internal_address_is_refused(
    production_api: TestClient, engine: Engine
) -> None:
    admin = make_caller(production_api, engine, scope="careloop/admin system/*.rs")
    body = {"name": "hospital", "client_id": "careloop", "scope": "system/Patient.rs"}
    for url in ["https://169.254.169.254/fhir", "https://10.1.1.1/fhir", "http://ehr.example/fhir"]:
        response = admin.post("/admin/ehr-connections", json={**body, "fhir_base_url": url})
        assert response.status_code == 422, response.text
        assert response.json()["issue"][0]["expression"] == ["fhir_base_url"]
    allowed = admin.post(
        "/admin/ehr-connections", json={**body, "fhir_base_url": "https://10.9.0.20/fhir/R4"}
    )
    assert allowed.status_code == 201, allowed.text


def _cli(tmp_path: Path, *args: str, allow: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CARELOOP_ENVIRONMENT": "production",
        "CARELOOP_SECRET_KEY": SECRET_KEY,
        "CARELOOP_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "CARELOOP_DATA_DIR": str(tmp_path),
        "CARELOOP_EGRESS_ALLOW": allow,
    }
    return subprocess.run(
        [sys.executable, "-m", "careloop", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_refuses_internal_webhooks_and_ehrs_unless_allow_listed(tmp_path: Path) -> None:
    refused = _cli(tmp_path, "notify", "add-webhook", "https://169.254.169.254/hook")
    assert refused.returncode == 2
    assert refused.stderr.startswith("address: webhook address refused")
    ehr = _cli(
        tmp_path,
        *("ehr", "add", "hospital", "--fhir-base-url", "https://192.168.7.7/fhir"),
        *("--client-id", "careloop", "--scope", "system/Patient.rs"),
    )
    assert ehr.returncode == 2
    assert ehr.stderr.startswith("fhir_base_url: FHIR base URL refused")
    allowed = _cli(
        tmp_path, "notify", "add-webhook", "https://192.168.7.7/hook", allow="192.168.7.0/24"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert '"secret": "whsec_' in allowed.stdout


def test_the_cli_refuses_an_internal_jwks_url(tmp_path: Path) -> None:
    refused = _cli(
        tmp_path,
        *("clients", "create", "app", "--scope", "system/Patient.rs"),
        *("--jwks-url", "https://169.254.169.254/jwks.json"),
    )
    assert refused.returncode == 2
    assert refused.stderr.startswith("jwks_url: JWKS URL refused")


def test_a_malformed_allow_list_stops_careloop(tmp_path: Path) -> None:
    result = _cli(tmp_path, "notify", "add-webhook", "https://x.example/h", allow="10.0.0.0/99")
    assert result.returncode != 0
    assert "CARELOOP_EGRESS_ALLOW" in result.stderr
