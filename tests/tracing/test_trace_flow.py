"""One trace from the app's POST to the EHR write and the webhook, and no PHI in any span.

Everything runs in this process, traced into an in-memory exporter behind careloop's scrubber:
the API (FastAPI instrumentation) relays the outbox after commit to a Celery worker (threads,
on kombu's in-memory broker), which evaluates the reading, pages the on-call webhook and writes
the report into the test EHR (httpx), every statement traced (SQLAlchemy). A PHI marker is
planted in the patient identifier (hence in the EHR's patient search), in request paths and
query strings, a header and the report's free text; it must appear nowhere in what is exported.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from ehr_server import TestEHR
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, select
from support.clients import BASE_URL, Caller, make_caller
from support.ehr import connect_ehr
from support.reports import phq9
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.logs.redaction import outbound_url
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Settings
from careloop.services.telemetry import Role
from careloop.services.telemetry.provider import Tracing
from careloop.workflows import runtime
from careloop.workflows.celery_app import celery_app, configure_celery
from careloop.workflows.telemetry import start_tracing
from careloop.workflows.web import create_app

MARKER = "phi-marker-7f3a9c"
"""Stands for PHI: a patient identifier, a free-text note, an id in a path, a query value."""
APP_SYSTEM = "https://app.example/patients"
ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 2]  # critical: pages on-call at once


@dataclass
class Flow:
    """careloop traced into ``spans``, with a worker, the test EHR and an on-call webhook."""

    exporter: InMemorySpanExporter
    tracing: Tracing
    api: TestClient
    caller: Caller
    ehr: TestEHR
    oncall: Receiver
    engine: Engine

    def spans(self) -> tuple[ReadableSpan, ...]:
        """What was exported so far (the batch processor flushed first)."""
        self.tracing.provider.force_flush()
        return self.exporter.get_finished_spans()


@pytest.fixture
def flow(settings: Settings, engine: Engine) -> Iterator[Flow]:
    """The whole flow, traced in this process; tracing undone afterwards."""
    traced = settings.model_copy(
        update={
            "broker_url": "memory://",
            "queue": f"careloop-tracing-{os.getpid()}-{secrets.token_hex(4)}",
            "relay_after_commit": True,
            "ehr_timeout_seconds": 5.0,
        }
    )
    exporter = InMemorySpanExporter()
    tracing = start_tracing(traced, Role.api, exporter=exporter)
    assert tracing is not None
    configure_celery(traced)
    runtime.configure(traced, engine)
    try:
        with (
            TestEHR() as ehr,
            TestClient(create_app(traced, engine), base_url=BASE_URL) as api,
            webhook_receiver(generate_webhook_secret()) as oncall,
            start_worker(
                celery_app,
                pool="threads",
                concurrency=2,
                perform_ping_check=False,
                loglevel="WARNING",
            ),
        ):
            caller = make_caller(api, engine)
            connect_ehr(api, engine, traced, caller, ehr)
            ehr.seed(
                {
                    "resourceType": "Patient",
                    "identifier": [{"system": APP_SYSTEM, "value": MARKER}],
                    "active": True,
                }
            )
            route = {
                "recipient": "oncall",
                "channel": "webhook",
                "address": oncall.url,
                "secret": oncall.secret,
            }
            assert caller.post("/v1/notification-routes", json=route).status_code == 201
            yield Flow(exporter, tracing, api, caller, ehr, oncall, engine)
    finally:
        tracing.shutdown()
        celery_app.close()


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _one(spans: list[ReadableSpan], what: str) -> ReadableSpan:
    assert spans, f"no {what} span"
    return spans[0]


def _text_of(span: ReadableSpan) -> str:
    """Everything a span exports that could carry PHI, as one string."""
    parts: list[Any] = [span.name, span.status.description, dict(span.attributes or {})]
    parts += [(e.name, dict(e.attributes or {})) for e in span.events]
    parts += [dict(link.attributes or {}) for link in span.links]
    return repr(parts)


def test_one_trace_from_the_post_to_the_ehr_write_and_the_webhook(flow: Flow) -> None:
    report = phq9(MARKER, ITEM9, note=f"feeling low, {MARKER}")
    response = flow.caller.post(
        f"/v1/symptom-reports?source={MARKER}",
        json=report,
        headers={"Idempotency-Key": MARKER, "User-Agent": f"app/{MARKER}"},
    )
    assert response.status_code == 201, response.text
    # The marker in paths and queries of other requests (a search by identifier, an unknown id).
    search = flow.caller.get(f"/fhir/Patient?identifier={APP_SYSTEM}|{MARKER}")
    assert search.status_code == 200
    assert flow.caller.get(f"/fhir/Patient/{MARKER}").status_code == 404

    [delivery] = flow.oncall.wait_for(1, timeout=30)
    assert delivery["body"]["severity"] == "critical"
    _wait(lambda: len(flow.ehr.resources("Observation")) == 1)

    ehr_write = outbound_url(flow.ehr.base_url)
    webhook = outbound_url(flow.oncall.url)

    def complete(spans: tuple[ReadableSpan, ...]) -> bool:
        urls = {s.attributes.get("url.full") or s.attributes.get("http.url") for s in spans}
        return {ehr_write, webhook} <= urls and any(
            s.name == "run/observation.evaluate_urgent" for s in spans
        )

    _wait(lambda: complete(flow.spans()))
    spans = list(flow.spans())

    post = _one(
        [s for s in spans if s.kind == SpanKind.SERVER and s.name == "POST /v1/symptom-reports"],
        "POST",
    )
    task = _one(
        [
            s
            for s in spans
            if s.kind == SpanKind.CONSUMER and s.name == "run/observation.evaluate_urgent"
        ],
        "evaluation task",
    )
    push = _one(
        [s for s in spans if s.kind == SpanKind.CONSUMER and s.name == "run/ehr.push"], "push task"
    )

    def client(url: str, method: str) -> ReadableSpan:
        return _one(
            [
                s
                for s in spans
                if s.kind == SpanKind.CLIENT
                and (s.attributes.get("url.full") or s.attributes.get("http.url")) == url
                and s.name == method
            ],
            f"{method} {url}",
        )

    ehr = client(ehr_write, "POST")
    hook = client(webhook, "POST")
    assert post.context is not None
    trace_id = post.context.trace_id
    assert {s.context.trace_id for s in (task, push, ehr, hook) if s.context} == {trace_id}
    # The statements are traced (as text with placeholders) in the same trace.
    statements = [s for s in spans if "db.statement" in (s.attributes or {})]
    assert any(s.context and s.context.trace_id == trace_id for s in statements)
    assert post.attributes.get("http.route") == "/v1/symptom-reports"
    assert post.attributes.get("http.target") in (None, "/v1/symptom-reports")

    leaks = [s.name for s in spans if MARKER in _text_of(s)]
    assert leaks == []
    # The outbox rows the POST wrote carried its trace.
    with flow.engine.connect() as conn:
        carried = conn.execute(
            select(OutboxMessage.traceparent).where(  # type: ignore[call-overload]
                OutboxMessage.traceparent.like(f"00-{trace_id:032x}-%")  # type: ignore[union-attr]
            )
        ).all()
    assert carried
