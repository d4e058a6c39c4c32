"""Rate limits: the token endpoint per client and per address, the API per client; 429 with
Retry-After, in memory and in real Redis; unknown clients and wrong secrets answered alike."""

from __future__ import annotations

import base64
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL, make_caller

from careloop.services.settings import Settings
from careloop.workflows.web import create_app

REDIS_URL = "redis://127.0.0.1:6379/0"


def _client(
    settings: Settings, engine: Engine, address: str = "203.0.113.7", **limits: Any
) -> TestClient:
    update = {
        "rate_limit_token_per_client": "",
        "rate_limit_token_per_ip": "",
        "rate_limit_api_per_client": "",
        **limits,
    }
    app = create_app(settings.model_copy(update=update), engine)
    return TestClient(app, base_url=BASE_URL, client=(address, 50000))


def _token_request(http: TestClient, client_id: str, secret: str = "wrong") -> Any:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    return http.post("/oauth/token", data=form)


def _assert_throttled(response: Any) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "throttled"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    return retry_after


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own in the real Redis; its keys are removed afterwards."""
    prefix = f"careloop-test-rl-{uuid.uuid4().hex}"
    yield prefix
    connection = redis.Redis.from_url(REDIS_URL)
    keys = list(connection.scan_iter(f"{prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()


def test_token_requests_per_client_are_limited(settings: Settings, engine: Engine) -> None:
    with _client(settings, engine, rate_limit_token_per_client="3/minute") as http:
        caller = make_caller(http, engine)  # one token request
        for _ in range(2):
            assert _token_request(http, caller.client_id).status_code == 401
        _assert_throttled(_token_request(http, caller.client_id, caller.client_secret))
        assert _token_request(http, "cl_someone_else").status_code == 401  # not this client's


def test_token_requests_per_address_are_limited(settings: Settings, engine: Engine) -> None:
    with _client(settings, engine, "198.51.100.1", rate_limit_token_per_ip="4/minute") as http:
        for n in range(4):
            assert _token_request(http, f"cl_guess_{n}").status_code == 401
        _assert_throttled(_token_request(http, "cl_guess_4"))
        _assert_throttled(http.post("/oauth/token", data={"grant_type": "password"}))
    with _client(settings, engine, "198.51.100.2", rate_limit_token_per_ip="4/minute") as other:
        assert _token_request(other, "cl_guess_0").status_code == 401


def test_basic_and_assertion_requests_count_for_the_client_they_name(
    settings: Settings, engine: Engine
) -> None:
    with _client(settings, engine, rate_limit_token_per_client="2/minute") as http:
        basic = base64.b64encode(b"cl_named:wrong").decode()
        headers = {"Authorization": f"Basic {basic}"}
        form = {"grant_type": "client_credentials"}
        assert http.post("/oauth/token", data=form, headers=headers).status_code == 401
        assert _token_request(http, "cl_named").status_code == 401
        _assert_throttled(http.post("/oauth/token", data=form, headers=headers))


def test_api_requests_per_client_are_limited(settings: Settings, engine: Engine) -> None:
    with _client(settings, engine, rate_limit_api_per_client="3/minute") as http:
        busy, calm = make_caller(http, engine), make_caller(http, engine)
        for _ in range(3):
            assert busy.get("/fhir/Patient").status_code == 200
        _assert_throttled(busy.get("/fhir/Patient"))
        _assert_throttled(busy.post("/v1/symptom-reports", json={}))
        assert calm.get("/fhir/Patient").status_code == 200


def test_a_window_lets_requests_through_again_after_retry_after(
    settings: Settings, engine: Engine
) -> None:
    with _client(settings, engine, rate_limit_token_per_client="2/2 second") as http:
        for _ in range(2):
            assert _token_request(http, "cl_patient").status_code == 401
        refused_at = time.monotonic()
        retry_after = _assert_throttled(_token_request(http, "cl_patient"))
        assert retry_after <= 2
        deadline = refused_at + retry_after + 3
        while _token_request(http, "cl_patient").status_code == 429:
            assert time.monotonic() < deadline, "still refused well after Retry-After"
            time.sleep(0.1)
        assert time.monotonic() - refused_at >= 0.5  # not let through at once


def test_counters_in_redis_are_shared_by_every_process(
    settings: Settings, engine: Engine, redis_prefix: str
) -> None:
    shared = {
        "rate_limit_storage_url": REDIS_URL,
        "rate_limit_key_prefix": redis_prefix,
        "rate_limit_token_per_client": "3/minute",
    }
    with (
        _client(settings, engine, **shared) as first,
        _client(settings, engine, **shared) as second,
    ):
        assert _token_request(first, "cl_shared").status_code == 401
        assert _token_request(second, "cl_shared").status_code == 401
        assert _token_request(first, "cl_shared").status_code == 401
        _assert_throttled(_token_request(second, "cl_shared"))
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{redis_prefix}*")
    assert keys, "the counters were not kept in Redis"


def test_the_api_limit_in_redis(settings: Settings, engine: Engine, redis_prefix: str) -> None:
    limits = {
        "rate_limit_storage_url": REDIS_URL,
        "rate_limit_key_prefix": redis_prefix,
        "rate_limit_api_per_client": "2/minute",
        "rate_limit_strategy": "fixed-window",
    }
    with _client(settings, engine, **limits) as http:
        caller = make_caller(http, engine)
        assert caller.get("/fhir/Patient").status_code == 200
        assert caller.get("/fhir/Patient").status_code == 200
        _assert_throttled(caller.get("/fhir/Patient"))


def test_requests_pass_when_the_counter_storage_is_down(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    down = {
        "rate_limit_storage_url": "redis://127.0.0.1:1/0",
        "rate_limit_api_per_client": "1/minute",
    }
    with _client(settings, engine, **down) as http:
        caller = make_caller(http, engine)
        for _ in range(3):
            assert caller.get("/fhir/Patient").status_code == 200
    assert "rate-limit storage failed" in caplog.text


def test_the_storage_follows_a_redis_broker() -> None:
    base = {"environment": "test", "secret_key": "s" * 40}
    assert Settings(**base).resolved_rate_limit_storage_url == "memory://"
    assert Settings(**base, broker_url="redis://h:6379/2").resolved_rate_limit_storage_url == (
        "redis://h:6379/2"
    )
    assert Settings(**base, broker_url="amqp://g@h//").resolved_rate_limit_storage_url == (
        "memory://"
    )
    explicit = Settings(**base, broker_url="redis://h/2", rate_limit_storage_url="redis://r/5")
    assert explicit.resolved_rate_limit_storage_url == "redis://r/5"
    with pytest.raises(ValueError, match="rate limit"):
        Settings(**base, rate_limit_api_per_client="lots")


def test_unknown_client_and_wrong_secret_are_answered_alike(
    app_client: TestClient, engine: Engine
) -> None:
    caller = make_caller(app_client, engine)
    wrong = _token_request(app_client, caller.client_id, "not-the-secret")
    unknown = _token_request(app_client, "cl_" + uuid.uuid4().hex, "not-the-secret")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert dict(wrong.headers) == dict(unknown.headers)

    def timed(client_id: str) -> float:
        started = time.perf_counter()
        _token_request(app_client, client_id, "not-the-secret")
        return time.perf_counter() - started

    # The unknown client runs the same scrypt check (against a dummy hash): without it, it
    # answered in about a twentieth of the time. Interleaved, so both see the same load.
    known, stranger = [], []
    for _ in range(9):
        known.append(timed(caller.client_id))
        stranger.append(timed("cl_" + uuid.uuid4().hex))
    ratio = statistics.median(stranger) / statistics.median(known)
    assert ratio > 0.3, (ratio, known, stranger)
