"""Fixtures of the bulk export tests: an app with small files, and synthetic patients' data."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller

from careloop.services.settings import Settings
from careloop.workflows.web import create_app


@pytest.fixture(scope="module")
def bulk_settings(settings: Settings) -> Settings:
    """The test settings with two resources per file, so exports take several chunks."""
    return settings.model_copy(update={"bulk_export_file_resources": 2})


@pytest.fixture(scope="module")
def bulk_app(bulk_settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(bulk_settings, engine), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def exporter(bulk_app: TestClient, engine: Engine) -> Caller:
    """A backend client with every scope, in its own tenant."""
    return make_caller(bulk_app, engine)
