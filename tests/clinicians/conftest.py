"""Fixtures of the clinician tests: a clinician who has a password, a browser of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL
from support.login import Account, new_account


@pytest.fixture
def account(engine: Engine) -> Account:
    """A clinician with a password, in a tenant of its own."""
    return new_account(engine)


@pytest.fixture
def browser(app_client: TestClient) -> Iterator[TestClient]:
    """A browser of its own (its own cookies) on the shared app."""
    with TestClient(app_client.app, base_url=BASE_URL) as client:
        yield client
