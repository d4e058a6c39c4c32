"""Tracing in a careloop process configured from its environment: off by default (nothing of
OpenTelemetry imported, no provider, the outbox column NULL), and on with an endpoint: spans
exported over OTLP/HTTP to a collector, as ``careloop-api``, without PHI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SCRIPT = Path(__file__).with_name("post_one_report.py")
TESTS = Path(__file__).resolve().parents[1]
MARKER = "phi-marker-2b8e41"


def _run(env_extra: dict[str, str], data_dir: Path) -> dict[str, Any]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CARELOOP_", "OTEL_", "PYTHON"))
    }
    env |= {"PYTHONPATH": str(TESTS), **env_extra}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(data_dir), MARKER],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


class Collector:
    """An OTLP/HTTP traces endpoint on loopback that keeps every request body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.bodies.append(body)
                owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A collector for one test."""
    sink = Collector()
    yield sink
    sink.server.shutdown()
    sink.server.server_close()


def test_off_by_default_nothing_imported_and_the_outbox_column_null(tmp_path: Path) -> None:
    # A service name alone configures no endpoint: still off.
    result = _run({"OTEL_SERVICE_NAME": "careloop-api"}, tmp_path)
    # FastAPI (0.165+) imports the OpenTelemetry API itself; careloop loads nothing more.
    heavy = ("opentelemetry.sdk", "opentelemetry.instrumentation", "opentelemetry.exporter")
    assert [m for m in result["loaded"] if m.startswith(heavy)] == []
    assert result["careloop_provider"] == "NoneType"  # no tracer provider installed
    assert result["global_provider"] == "ProxyTracerProvider"  # the API's default
    assert result["traceparents"] and set(result["traceparents"]) == {None}


def test_on_with_an_endpoint_exports_over_otlp_without_phi(
    tmp_path: Path, collector: Collector
) -> None:
    result = _run({"CARELOOP_OTEL_ENDPOINT": collector.url}, tmp_path)
    assert result["careloop_provider"] == "TracerProvider"
    assert result["global_provider"] == "ProxyTracerProvider"  # careloop's is never global
    assert result["traceparents"] and None not in result["traceparents"]
    assert {tp.split("-")[1] for tp in result["traceparents"]} != set()
    # The SDK flushed its batch at exit; every span reached the collector.
    assert collector.bodies and set(collector.paths) == {"/v1/traces"}
    names: set[str] = set()
    services: set[str] = set()
    for body in collector.bodies:
        assert MARKER.encode() not in body
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                names |= {span.name for span in scope_spans.spans}
    assert services == {"careloop-api"}
    assert "POST /v1/symptom-reports" in names
    traces = {tp.split("-")[1] for tp in result["traceparents"]}
    assert len(traces) == 1  # one report, one trace, carried by each of its outbox rows
