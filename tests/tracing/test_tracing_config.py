"""Which processes trace, where to and as what; and what the scrubber lets out of a span."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode

from careloop.services.settings import Environment, Settings
from careloop.services.telemetry import Role, TracingConfig, tracing_config
from careloop.services.telemetry.scrub import scrub

MARKER = "phi-marker-91c0d2"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings without a careloop endpoint."""
    return Settings(environment=Environment.test, data_dir=tmp_path, secret_key="s" * 40)


def test_off_without_an_endpoint(settings: Settings) -> None:
    assert tracing_config(settings, Role.api, {}) is None
    assert tracing_config(settings, Role.api, {"OTEL_SERVICE_NAME": "x"}) is None


def test_careloop_endpoint_wins_and_gets_the_traces_path(settings: Settings) -> None:
    mine = settings.model_copy(update={"otel_endpoint": "http://collector:4318/"})
    standard = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4318"}
    assert tracing_config(mine, Role.worker, standard) == TracingConfig(
        "http://collector:4318/v1/traces", "careloop-worker"
    )
    full = mine.model_copy(update={"otel_endpoint": "https://c.example/v1/traces"})
    assert tracing_config(full, Role.beat, {}) == TracingConfig(
        "https://c.example/v1/traces", "careloop-beat"
    )


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
)
def test_standard_endpoint_left_to_the_exporter(settings: Settings, variable: str) -> None:
    environ = {variable: "http://collector:4318", "OTEL_SERVICE_NAME": "careloop-api-eu"}
    assert tracing_config(settings, Role.api, environ) == TracingConfig(None, "careloop-api-eu")


@pytest.mark.parametrize(
    "off", [{"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}], ids=str
)
def test_standard_switches_turn_it_off(settings: Settings, off: dict[str, str]) -> None:
    mine = settings.model_copy(update={"otel_endpoint": "http://collector:4318"})
    assert tracing_config(mine, Role.api, off) is None


def _span(kind: SpanKind, name: str, attributes: dict[str, object]) -> ReadableSpan:
    return ReadableSpan(
        name=name,
        kind=kind,
        attributes=attributes,  # type: ignore[arg-type]
        events=[
            Event(
                "exception",
                {
                    "exception.type": "ValueError",
                    "exception.message": MARKER,
                    "exception.stacktrace": MARKER,
                },
            ),
            Event(f"note {MARKER}", {"text": MARKER}),
        ],
        status=Status(StatusCode.ERROR, f"ValueError: {MARKER}"),
    )


def test_server_span_keeps_the_route_template_only() -> None:
    span = scrub(
        _span(
            SpanKind.SERVER,
            f"GET /fhir/Patient/{MARKER}",
            {
                "http.method": "GET",
                "http.route": "/fhir/{type}/{id}",
                "http.target": f"/fhir/Patient/{MARKER}?identifier=s|{MARKER}",
                "url.path": f"/fhir/Patient/{MARKER}",
                "url.query": f"identifier=s|{MARKER}",
                "http.url": f"https://careloop.example/fhir/Patient/{MARKER}?a={MARKER}",
                "http.host": "careloop.example",
                "http.scheme": "https",
                "http.user_agent": MARKER,
                "net.peer.ip": "203.0.113.9",
                "client.address": "203.0.113.9",
                "http.request.header.x_patient": MARKER,
                "http.status_code": 500,
            },
        )
    )
    assert span.name == "GET /fhir/{type}/{id}"
    assert dict(span.attributes or {}) == {
        "http.method": "GET",
        "http.route": "/fhir/{type}/{id}",
        "http.target": "/fhir/{type}/{id}",
        "url.path": "/fhir/{type}/{id}",
        "http.url": "https://careloop.example/fhir/{type}/{id}",
        "http.host": "careloop.example",
        "http.scheme": "https",
        "http.status_code": 500,
    }
    [event] = span.events
    assert event.name == "exception" and dict(event.attributes or {}) == {
        "exception.type": "ValueError"
    }
    assert span.status.status_code == StatusCode.ERROR and not span.status.description


def test_client_span_url_loses_query_and_ids_and_sql_its_literals() -> None:
    client = scrub(
        _span(
            SpanKind.CLIENT,
            f"GET https://ehr.example/fhir/R4/Patient?identifier={MARKER}",
            {
                "http.request.method": "GET",
                "url.full": f"https://ehr.example/fhir/R4/Patient/{MARKER}?identifier={MARKER}",
                "server.address": "ehr.example",
            },
        )
    )
    assert client.name == "GET"
    assert client.attributes is not None
    assert client.attributes["url.full"] == "https://ehr.example/fhir/{id}/Patient/{id}"
    sql = scrub(
        _span(
            SpanKind.CLIENT,
            "SELECT careloop",
            {"db.system": "postgresql", "db.statement": f"SELECT 1 WHERE v = '{MARKER}' AND n=%s"},
        )
    )
    assert sql.name == "SELECT careloop"
    assert sql.attributes is not None
    assert sql.attributes["db.statement"] == "SELECT 1 WHERE v = '?' AND n=%s"
    for span in (client, sql):
        assert MARKER not in repr((span.name, dict(span.attributes or {}), span.events))
