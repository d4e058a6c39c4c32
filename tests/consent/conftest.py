"""careloop under the safe consent defaults (no EHR sync, no research export without consent).

The session's shared settings permit EHR sync for tests that never record consent; these
tests run their own app with the defaults as shipped, connected to the in-repo test EHR and a
verified webhook receiver.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ehr_server import TestEHR
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller
from support.consent_world import World
from support.ehr import connect_ehr
from webhook_receiver import webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.settings import Settings
from careloop.workflows.web import create_app


@pytest.fixture(scope="module")
def strict_settings(settings: Settings) -> Settings:
    """The test settings with the consent policy as shipped."""
    return settings.model_copy(
        update={"consent_defaults": "", "ehr_timeout_seconds": 2.0, "ehr_circuit_failures": 100}
    )


@pytest.fixture(scope="module")
def strict_app(strict_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(strict_settings, engine), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def app_caller(strict_app: TestClient, engine: Engine) -> Caller:
    """An app client with every scope, in its own tenant, under the shipped policy."""
    return make_caller(strict_app, engine)


@pytest.fixture
def world(
    strict_app: TestClient, strict_settings: Settings, engine: Engine, app_caller: Caller
) -> Iterator[World]:
    with TestEHR() as ehr, webhook_receiver(generate_webhook_secret()) as oncall:
        connect_ehr(strict_app, engine, strict_settings, app_caller, ehr, "system/*.cruds")
        route = {
            "recipient": "oncall",
            "channel": "webhook",
            "address": oncall.url,
            "secret": oncall.secret,
        }
        assert app_caller.post("/v1/notification-routes", json=route).status_code == 201
        yield World(app_caller, ehr, oncall, engine, strict_settings)
