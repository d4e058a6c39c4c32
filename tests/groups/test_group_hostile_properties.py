"""Property-based: whatever JSON reaches POST /v1/group-sessions, the answer is below 500, a
refusal is an OperationOutcome naming the field and writes nothing, and an accepted session is
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
from group_bodies import group_session
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
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
            "no-show",
            "left-early",
            "in-person",
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
    ("app_session_id",),
    ("facilitator",),
    ("facilitator", "system"),
    ("facilitator", "value"),
    ("modality",),
    ("status",),
    ("start",),
    ("end",),
    ("participants",),
    ("participants", 0),
    ("participants", 0, "patient"),
    ("participants", 0, "patient", "value"),
    ("participants", 0, "attendance"),
    ("participants", 1, "left_at"),
    ("topic",),  # no such field: refused
    ("facilitator", "name"),  # no names
]


def _participants(tag: str) -> list[dict[str, Any]]:
    return [
        {"patient": {"system": "https://app.example/patients", "value": f"a-{tag}"},
         "attendance": "attended"},
        {"patient": {"system": "https://app.example/patients", "value": f"b-{tag}"},
         "attendance": "left-early"},
    ]  # fmt: skip


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
        "/v1/group-sessions",
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
    assert response.status_code >= 400  # no random value is a whole valid session
    _expressions(response)
    assert _stored(engine, prop_caller.tenant) == before


def _mutated(body: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


@PROPERTY_SETTINGS
@given(path=st.sampled_from(FIELDS), value=json_values)
@example(path=("start",), value="2026-11-24T19:00:00Z")
@example(path=("participants", 1, "left_at"), value="2026-11-24T17:30:00+00:00")
def test_any_field_value_is_refused_by_name_or_stored_once(
    prop_caller: Caller, engine: Engine, path: tuple[str | int, ...], value: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    body = _mutated(group_session(f"s-{tag}", _participants(tag)), path, value)
    before = _stored(engine, prop_caller.tenant)
    response = _post(prop_caller, body)
    assert response.status_code < 500, response.text
    after = _stored(engine, prop_caller.tenant)
    if response.status_code >= 400:
        assert after == before
        if response.status_code == 422:
            # a start moved past the end is refused on "end", the field that is then wrong
            named = {str(path[0]), "end"} if path[0] == "start" else {str(path[0])}
            assert any(e.split(".")[0].split("[")[0] in named for e in _expressions(response))
        else:
            _expressions(response)
    else:
        assert response.status_code == 201, response.text
        # the Group, the group's Encounter, 2 participant Encounters, 2 new Patients and the
        # session's Provenance
        fhir_rows = after[0] - before[0]
        assert fhir_rows == 7, response.json()
        assert _post(prop_caller, body).json() == response.json()
        assert _stored(engine, prop_caller.tenant) == after
