"""schemathesis against careloop's own OpenAPI, in-process on PostgreSQL: no server errors.

Every operation of the OpenAPI gets generated requests (valid and invalid by its schema) with a
bearer token of every scope. Every answer must be below 500; outside /fhir (documented by the
FHIR API's own module) the status code, content type and body must also be as the OpenAPI says
(every refusal an OperationOutcome).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hostile import keep_hypothesis_out_of_the_work_tree
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.clients import BASE_URL, token_for
from support.databases import fresh_pg_database

from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import Environment, Settings
from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope
from careloop.workflows.web import create_app

SCOPES = "system/*.cruds careloop/admin"
MAX_EXAMPLES = 100


def _settings(database_url: str) -> Settings:
    return Settings(
        environment=Environment.test,
        database_url=database_url,
        secret_key="schemathesis-secret-" + "x" * 32,
        base_url=BASE_URL,
        relay_after_commit=False,
    )


keep_hypothesis_out_of_the_work_tree()
# The OpenAPI needs no database: build it once at import, so each operation is its own test.
_DOCUMENT = create_app(_settings("postgresql+psycopg://unused@127.0.0.1:1/unused")).openapi()
schema = schemathesis.openapi.from_dict(_DOCUMENT)


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[FastAPI, dict[str, str]]]:
    """careloop on a fresh PostgreSQL database, and headers with a token of every scope."""
    with fresh_pg_database("st") as url:
        engine = make_engine(url, pool_size=4)
        upgrade(engine)
        app = create_app(_settings(url), engine)
        with session_scope(engine) as session:
            tenant = f"tenant-{uuid.uuid4().hex[:8]}"
            client = create_client(session, "schemathesis", SCOPES, tenant)
        assert client.client_secret is not None
        with TestClient(app, base_url=BASE_URL) as http:
            token = token_for(http, client.client_id, client.client_secret, SCOPES)
        yield app, {"Authorization": f"Bearer {token}"}
        engine.dispose()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, api: tuple[FastAPI, dict[str, str]]) -> None:
    app, headers = api
    checks = [not_a_server_error]
    if not case.operation.path.startswith("/fhir"):
        checks += [status_code_conformance, content_type_conformance, response_schema_conformance]
    case.call_and_validate(app=app, headers=headers, checks=checks)


NEWEST = {
    ("POST", "/v1/consents"),
    ("GET", "/v1/consents"),
    ("POST", "/v1/consents/{consent_id}/revoke"),
    ("DELETE", "/v1/consents/{consent_id}"),
    ("POST", "/v1/risk-signals"),
    ("GET", "/v1/risk-signals/{signal_id}"),
    ("POST", "/v1/group-sessions"),
    ("GET", "/v1/group-sessions/{session_id}"),
}
"""The newest app endpoints, which the generated tests above must reach."""


def test_the_newest_endpoints_are_in_the_openapi_with_their_bodies() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in _DOCUMENT["paths"].items()
        for method in operations
    }
    assert documented >= NEWEST
    for path in ("/v1/consents", "/v1/risk-signals", "/v1/group-sessions"):
        body = _DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"], path  # schemathesis generates bodies from it
