"""Property-based: whatever JSON reaches POST /v1/risk-signals, the answer is below 500, a
refusal is an OperationOutcome naming the field and writes nothing, and an accepted signal is
stored once. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from risk_bodies import signal
from sqlalchemy import Engine, func, select
from sqlmodel import Session
from support.clients import Caller, make_caller

from careloop.services.outbox.models import OutboxMessage
from careloop.services.store.models import FhirResource
from careloop.services.tenancy.models import Tenant

_home = tempfile.mkdtemp(prefix="careloop-hypothesis-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
set_hypothesis_home_dir(_home)  # hypothesis caches stay out of the work tree

PROPERTY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NUL = "\u0000"
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=40)
    | st.sampled_from(
        [
            NUL,
            "x" * 5000,
            "I do not want to be here anymore",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "2026-11-20T09:30:00-16:05",
            "high",
            "self-harm",
            "²",
            " ",
            "\u2028",
        ]
    )
)
json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    ("patient",),
    ("patient", "system"),
    ("patient", "value"),
    ("source",),
    ("category",),
    ("level",),
    ("model",),
    ("model", "name"),
    ("model", "version"),
    ("detected",),
    ("conversation",),
    ("app_signal_id",),
    ("text",),  # no such field: refused
    ("model", "notes"),
]


def _stored(engine: Engine, tenant_name: str) -> tuple[int, int]:
    """The tenant's FHIR resources and outbox messages."""
    with Session(engine) as session:
        tenant_id = session.execute(
            select(Tenant.id).where(Tenant.name == tenant_name)  # type: ignore[arg-type]
        ).scalar_one()
        counts = []
        for model in (FhirResource, OutboxMessage):
            table = model.__table__  # type: ignore[attr-defined]
            counts.append(
                session.execute(
                    select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
                ).scalar_one()
            )
        return counts[0], counts[1]


@pytest.fixture
def prop_caller(app_client: TestClient, engine: Engine) -> Caller:
    """A caller with every scope, in its own tenant (shared by a test's examples)."""
    return make_caller(app_client, engine)


def _expressions(response: Any) -> list[str]:
    assert response.headers["content-type"].startswith("application/fhir+json"), response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert all(issue.get("expression") for issue in body["issue"]), body
    return [e for issue in body["issue"] for e in issue["expression"]]


def _post(caller: Caller, body: Any) -> Any:
    # json.dumps writes NaN/Infinity and lone surrogates as given: hostile, as clients can be.
    return caller.post(
        "/v1/risk-signals",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


@PROPERTY_SETTINGS
@given(body=json_values)
def test_any_json_body_is_answered_below_500_and_writes_nothing_when_refused(
    prop_caller: Caller, engine: Engine, body: Any
) -> None:
    before = _stored(engine, prop_caller.tenant)
    response = _post(prop_caller, body)
    assert response.status_code < 500, response.text
    assert response.status_code >= 400  # no random value is a whole valid signal
    _expressions(response)
    assert _stored(engine, prop_caller.tenant) == before


def _mutated(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


@PROPERTY_SETTINGS
@given(path=st.sampled_from(FIELDS), value=json_values)
def test_any_field_value_is_refused_by_name_or_stored_once(
    prop_caller: Caller, engine: Engine, path: tuple[str, ...], value: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    body = _mutated(signal(f"prop-{tag}", app_signal_id=f"s-{tag}"), path, value)
    before = _stored(engine, prop_caller.tenant)
    response = _post(prop_caller, body)
    assert response.status_code < 500, response.text
    after = _stored(engine, prop_caller.tenant)
    if response.status_code >= 400:
        assert after == before
        if response.status_code == 422:
            assert any(e.startswith(path[0]) for e in _expressions(response))
        else:
            _expressions(response)
    else:
        assert response.status_code == 201, response.text
        # a RiskAssessment, its Provenance and (new patient) the Patient; one evaluation event
        fhir_rows, messages = after[0] - before[0], after[1] - before[1]
        assert fhir_rows == 3 and messages >= 1
        assert _post(prop_caller, body).json() == response.json()
        assert _stored(engine, prop_caller.tenant) == after
