"""Probes never wait on the database for their security headers.

Every response's Content-Security-Policy names the active EHR connections' origins, read from
the database now and then; a liveness probe answered on a database that hangs would hang too,
and Kubernetes would restart healthy pods over a database problem.
"""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from careloop.services.common.security_headers import (
    PROBE_PATHS,
    ContentSecurityPolicy,
    SecurityHeaders,
)


class _Origins:
    """An origins provider that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> tuple[str, ...]:
        self.calls += 1
        return ("https://ehr.example",)


def _client(origins: _Origins) -> TestClient:
    def ok(_request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    paths = [*PROBE_PATHS, "/dashboard"]
    inner = Starlette(routes=[Route(path, ok) for path in paths])
    app = SecurityHeaders(inner, ContentSecurityPolicy(), ("https://static.example",), origins)
    return TestClient(app)


@pytest.mark.parametrize("path", sorted(PROBE_PATHS))
def test_a_probe_is_answered_without_the_origins(path: str) -> None:
    origins = _Origins()
    response = _client(origins).get(path)
    assert response.status_code == 200
    assert origins.calls == 0
    policy = response.headers["Content-Security-Policy"]
    assert "https://static.example" in policy and "https://ehr.example" not in policy


def test_other_paths_name_the_ehr_origins() -> None:
    origins = _Origins()
    response = _client(origins).get("/dashboard")
    assert origins.calls == 1
    assert "https://ehr.example" in response.headers["Content-Security-Policy"]
