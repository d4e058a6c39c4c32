"""Every response carries the security headers: pages, API answers, errors, 404s and 500s."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from starlette.responses import PlainTextResponse
from support.clients import BASE_URL, make_caller

from careloop.integrations.egress.destinations import DestinationPolicy
from careloop.services.common.security_headers import ContentSecurityPolicy
from careloop.services.ehr.service import add_connection
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.web import create_app


def _allowing(host: str) -> DestinationPolicy:
    """Test rules that take ``host`` (a made-up name no DNS answers) as allow-listed."""
    return DestinationPolicy.create(production=False, allow=host)


def _boom() -> None:
    raise RuntimeError("an unexpected failure")


def _own_policy() -> PlainTextResponse:
    return PlainTextResponse("x", headers={"Content-Security-Policy": "default-src 'none'"})


def _app(settings: Settings, engine: Engine, **update: object) -> FastAPI:
    app = create_app(settings.model_copy(update=update), engine)
    app.add_api_route("/test-boom", _boom)
    app.add_api_route("/test-own-policy", _own_policy)
    return app


@pytest.fixture
def http(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """careloop with no cache on the EHR origins, and one extra framing origin."""
    app = _app(
        settings,
        engine,
        frame_ancestors_ttl_seconds=0,
        frame_ancestors="https://ehr-portal.example",
    )
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield client


def _directives(csp: str) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in csp.split("; ")}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/fhir/metadata", 200),
        ("GET", "/.well-known/jwks.json", 200),
        ("GET", "/fhir/Observation?patient=x", 401),
        ("GET", "/no-such-route", 404),
        ("POST", "/oauth/token", 400),
        ("GET", "/launch?iss=https://unknown.example/fhir&launch=x", 400),
        ("GET", "/login", 200),
        ("GET", "/test-boom", 500),
    ],
)
def test_every_response_carries_the_headers(
    http: TestClient, method: str, path: str, status: int
) -> None:
    response = http.request(method, path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    directives = _directives(response.headers["content-security-policy"])
    assert directives["default-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"].split()[:2] == ["'self'", "https://ehr-portal.example"]
    assert "x-frame-options" not in response.headers  # frame-ancestors supersedes it
    assert "strict-transport-security" not in response.headers  # plain http


def test_a_body_over_the_limit_is_refused_with_the_headers(http: TestClient) -> None:
    response = http.post("/oauth/token", content=b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors" in response.headers["content-security-policy"]


def test_frame_ancestors_follow_the_active_ehr_connections(
    http: TestClient, engine: Engine
) -> None:
    caller = make_caller(http, engine)
    host = f"ehr-{uuid.uuid4().hex[:8]}.example"
    assert host not in http.get("/no-such-route").headers["content-security-policy"]
    with session_scope(engine) as session:
        add_connection(
            session,
            "hospital",
            f"https://{host}:8443/fhir/R4",
            "c",
            "system/*.rs",
            caller.tenant,
            destinations=_allowing(host),
        )
    ancestors = _directives(http.get("/no-such-route").headers["content-security-policy"])
    assert f"https://{host}:8443" in ancestors["frame-ancestors"].split()


def test_ehr_origins_are_cached_for_the_ttl(settings: Settings, engine: Engine) -> None:
    app = _app(settings, engine, frame_ancestors_ttl_seconds=3600)
    with TestClient(app, base_url=BASE_URL) as client:
        caller = make_caller(client, engine)
        first = client.get("/no-such-route").headers["content-security-policy"]
        host = f"ehr-{uuid.uuid4().hex[:8]}.example"
        with session_scope(engine) as session:
            add_connection(
                session,
                "late",
                f"https://{host}/fhir",
                "c",
                "system/*.rs",
                caller.tenant,
                destinations=_allowing(host),
            )
        assert client.get("/no-such-route").headers["content-security-policy"] == first
        assert host not in first


def test_hsts_when_https(settings: Settings, engine: Engine) -> None:
    with TestClient(_app(settings, engine, base_url="https://careloop.example")) as configured:
        response = configured.get("/no-such-route")
        assert response.headers["strict-transport-security"] == "max-age=31536000"
    with TestClient(_app(settings, engine), base_url="https://testserver") as over_https:
        assert over_https.get("/healthz").headers["strict-transport-security"]


def test_a_route_can_have_its_own_policy(http: TestClient) -> None:
    app = http.app
    assert isinstance(app, FastAPI)
    policy: ContentSecurityPolicy = app.state.content_security_policy
    policy.route("/docs", {"script-src": "'self' 'sha256-abc='", "img-src": "'self' data:"})
    docs = _directives(http.get("/docs").headers["content-security-policy"])
    assert docs["script-src"] == "'self' 'sha256-abc='" and docs["img-src"] == "'self' data:"
    assert docs["default-src"] == "'self'" and "'self'" in docs["frame-ancestors"]
    other = _directives(http.get("/healthz").headers["content-security-policy"])
    assert "script-src" not in other
    own = http.get("/test-own-policy")
    assert own.headers["content-security-policy"] == "default-src 'none'"
    assert own.headers["x-content-type-options"] == "nosniff"
    with pytest.raises(ValueError):
        policy.route("/x", {"script-src": "'self'; frame-ancestors *"})


def test_frame_ancestors_setting_takes_origins_only() -> None:
    with pytest.raises(ValueError, match="origin"):
        Settings(
            environment="test",
            secret_key="s" * 40,
            frame_ancestors="https://ok.example https://bad.example/path;x",
        )
