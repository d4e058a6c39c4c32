"""The redaction layer on the records libraries really write, and the API's unhandled errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from careloop.services.common.unhandled import UnhandledErrors
from careloop.services.logs.config import formatter
from careloop.services.logs.redaction import outbound_url, strip_urls

PHI = "CANARY-4711"
LIBRARY_LOGGERS = (
    "careloop.test",
    "celery.app.trace",
    "httpx",
    "sqlalchemy.engine.Engine",
    "uvicorn",
    "uvicorn.access",
)


Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def rendered() -> Iterator[Lines]:
    """What every logger wrote, through careloop's formatter, as parsed JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json", "test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # Other tests in this process (in-process uvicorn and celery workers) reconfigure these.
    saved: dict[str, tuple[int, bool, bool, list[logging.Handler]]] = {}
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, logger.disabled, logger.handlers)
        logger.setLevel(logging.DEBUG)
        logger.propagate, logger.disabled, logger.handlers = True, False, []

    def read() -> list[dict[str, Any]]:
        text = stream.getvalue()
        assert PHI not in text
        return [json.loads(line) for line in text.splitlines()]

    yield read
    root.removeHandler(handler)
    root.setLevel(level)
    for name, (old_level, propagate, disabled, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(old_level)
        logger.propagate, logger.disabled, logger.handlers = propagate, disabled, handlers


def _database_error() -> IntegrityError:
    orig = Exception(f"duplicate key: Key (value)=({PHI}) already exists")
    return IntegrityError("INSERT INTO patient_identifier VALUES (%(v)s)", {"v": PHI}, orig)


def test_exceptions_are_their_class_only(rendered: Lines) -> None:
    log = logging.getLogger("careloop.test")
    try:
        raise _database_error()
    except IntegrityError as exc:
        log.exception("write failed: %s", exc)
        log.error(exc)
    [with_trace, bare] = rendered()
    assert with_trace["event"] == "write failed: IntegrityError(Exception)"
    assert with_trace["error_class"] == "IntegrityError(Exception)"
    assert bare["event"] == "IntegrityError(Exception)"
    assert with_trace["level"] == "error" and with_trace["logger"] == "careloop.test"
    assert {"time", "process"} <= with_trace.keys()


def test_celery_task_messages_lose_text_arguments_and_results(rendered: Lines) -> None:
    trace = logging.getLogger("celery.app.trace")
    context = {
        "hostname": "w1",
        "id": "t-1",
        "name": "observation.evaluate",
        "exc": f"IntegrityError('{PHI}')",
        "traceback": f"Traceback ... {PHI}",
        "args": f"['{PHI}']",
        "kwargs": f"{{'note': '{PHI}'}}",
        "description": "raised unexpected",
    }
    trace.error("Task %(name)s[%(id)s] %(description)s: %(exc)s", context, extra={"data": context})
    trace.info(
        "Task %(name)s[%(id)s] retry: %(exc)s",
        {
            "name": "notification.deliver",
            "id": "t-2",
            "exc": f"Retry in 4s: IntegrityError('{PHI}')",
        },
    )
    trace.info(
        "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s",
        {"name": "ehr.pull", "id": "t-3", "runtime": 0.5, "return_value": {"n": PHI}},
    )
    [failed, retry, succeeded] = rendered()
    assert failed["event"] == "Task observation.evaluate[t-1] raised unexpected: IntegrityError"
    assert "data" not in failed
    assert retry["event"] == "Task notification.deliver[t-2] retry: Retry in 4s: IntegrityError"
    assert succeeded["event"] == "Task ehr.pull[t-3] succeeded in 0.5s: [redacted]"


def test_outbound_requests_lose_query_strings_and_ids(rendered: Lines) -> None:
    url = httpx.URL(f"https://user:pw@ehr.example/fhir/Patient?identifier=sys|{PHI}")
    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s %d %s"', "GET", url, "HTTP/1.1", 200, "OK"
    )
    hook = f"https://hooks.example/services/T0/{PHI}/x?token={PHI}"
    logging.getLogger("httpx").info(
        'HTTP Request: %s %s "%s %d %s"', "POST", hook, "HTTP/1.1", 500, "Error"
    )
    [search, webhook] = rendered()
    assert search["event"] == 'HTTP Request: GET https://ehr.example/fhir/Patient "HTTP/1.1 200 OK"'
    assert webhook["event"].startswith(
        "HTTP Request: POST https://hooks.example/services/{id}/{id}/x "
    )


def test_sql_parameters_and_query_strings_never_print(rendered: Lines) -> None:
    logging.getLogger("sqlalchemy.engine.Engine").warning("[generated] %r", {"value": PHI})
    logging.getLogger("uvicorn.access").warning(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        f"/fhir/Patient?identifier={PHI}",
        "1.1",
        200,
    )
    logging.getLogger("careloop.test").info("linked", extra={"note": PHI, "route": "/v1/x"})
    [sql, access, extra] = rendered()
    assert sql["event"] == "[generated] {'value': [redacted]}"
    assert access["event"] == '127.0.0.1:5000 - "GET /fhir/Patient HTTP/1.1" 200'
    assert extra["route"] == "/v1/x" and "note" not in extra


def test_url_helpers() -> None:
    assert strip_urls(f"see http://a:b@h:1/p?q={PHI}#f and /x?y={PHI}") == "see http://h:1/p and /x"
    assert outbound_url(f"http://127.0.0.1:9/hook/{PHI}?c=1") == "http://127.0.0.1:9/hook/{id}"
    assert outbound_url("https://ehr.example/fhir/Observation/123/_history/2") == (
        "https://ehr.example/fhir/Observation/{id}/_history/{id}"
    )


def test_an_unhandled_error_is_a_500_with_an_error_id_and_only_its_class_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = FastAPI()

    @app.post("/v1/things/{thing}")
    def fail(thing: str) -> None:
        raise _database_error()

    app.add_middleware(UnhandledErrors)
    with caplog.at_level(logging.ERROR), TestClient(app) as client:
        response = client.post(f"/v1/things/{PHI}", json={"note": PHI})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/fhir+json"
    error_id = response.json()["issue"][0]["diagnostics"].rsplit(" ", 1)[-1]
    assert PHI not in response.text
    [record] = [r for r in caplog.records if r.name == "careloop.api"]
    assert record.getMessage() == (
        f"unhandled IntegrityError(Exception) on POST /v1/things/{{thing}} (error id {error_id})"
    )
    assert record.exc_info is None
    assert PHI not in caplog.text
