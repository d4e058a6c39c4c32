"""Started on any port without CARELOOP_BASE_URL, every link careloop hands out names that port."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support.clients import token_for
from support.processes import free_port, inherited_env, wait_healthy
from support.reports import phq9
from webhook_receiver import webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.cli.base_url import BaseUrlError, derive_base_url
from careloop.services.settings import Environment, Settings

CLI = [sys.executable, "-m", "careloop"]


def _settings(**values: object) -> Settings:
    return Settings(secret_key="s" * 40, **values)  # type: ignore[arg-type]


def test_base_url_follows_the_bound_address() -> None:
    assert derive_base_url(_settings(), "127.0.0.1", 8123) == ("http://127.0.0.1:8123", None)
    assert derive_base_url(_settings(), "::1", 8123) == ("http://[::1]:8123", None)
    assert derive_base_url(_settings(), "localhost", 9) == ("http://localhost:9", None)


def test_configured_base_url_wins() -> None:
    configured = _settings(base_url="https://careloop.example.org")
    assert derive_base_url(configured, "0.0.0.0", 8123) == ("https://careloop.example.org", None)


def test_wildcard_bind_uses_loopback_and_warns() -> None:
    url, warning = derive_base_url(_settings(), "0.0.0.0", 8123)
    assert url == "http://127.0.0.1:8123"
    assert warning is not None and "CARELOOP_BASE_URL" in warning


def test_production_refuses_to_guess() -> None:
    with pytest.raises(BaseUrlError, match="CARELOOP_BASE_URL"):
        derive_base_url(_settings(environment=Environment.production), "10.1.2.3", 443)


def test_serve_in_production_without_base_url_exits_with_a_message(tmp_path: Path) -> None:
    env = _clean_env(tmp_path) | {
        "CARELOOP_ENVIRONMENT": "production",
        "CARELOOP_SECRET_KEY": "p" * 40,
    }
    done = subprocess.run(
        [*CLI, "serve", "--port", "1"], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"CARELOOP_BASE_URL must be set in production" in done.stderr


def _clean_env(data_dir: Path) -> dict[str, str]:
    env = inherited_env()
    return env | {"CARELOOP_DATA_DIR": str(data_dir)}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``careloop serve`` on a free port, with no CARELOOP_BASE_URL, from a scratch directory."""
    port = free_port()
    env = _clean_env(tmp_path)
    server = subprocess.Popen(
        [*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(origin, server)
        yield origin, env
    finally:
        server.terminate()
        server.wait(timeout=30)


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_every_link_names_the_port_serve_binds(served: tuple[str, dict[str, str]]) -> None:
    origin, env = served
    with (
        webhook_receiver(generate_webhook_secret()) as receiver,
        httpx.Client(base_url=origin, timeout=10) as http,
    ):
        subprocess.run(
            [*CLI, "notify", "add-webhook", receiver.url, "--secret", receiver.secret],
            env=env,
            check=True,
            capture_output=True,
        )
        created = subprocess.run(
            [*CLI, "clients", "create", "app", "--scope", "system/*.cruds"],
            env=env,
            check=True,
            capture_output=True,
        )
        credentials = json.loads(created.stdout)
        token = token_for(http, credentials["client_id"], credentials["client_secret"])
        claims = _claims(token)
        assert claims["iss"] == origin and claims["aud"] == origin

        auth = {"Authorization": f"Bearer {token}"}
        report = http.post("/v1/symptom-reports", json=phq9("port", [0] * 8 + [1]), headers=auth)
        assert report.status_code == 201
        assert report.headers["location"].startswith(f"{origin}/v1/symptom-reports/")

        bundle = http.get("/fhir/Observation", params={"_count": 1}, headers=auth).json()
        assert bundle["link"] and all(link["url"].startswith(origin) for link in bundle["link"])

        [delivery] = receiver.wait_for(1, timeout=60)  # built by the embedded worker
        assert delivery["body"]["alert"]["link"].startswith(f"{origin}/alerts/")
        [alert] = http.get("/v1/alerts", headers=auth).json()["alerts"]
        assert alert["link"].startswith(f"{origin}/alerts/")
