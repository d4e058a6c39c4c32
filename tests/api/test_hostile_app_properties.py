"""Property-based: whatever JSON reaches the app API, the answer is below 500, a refusal is an
OperationOutcome naming the field and writes nothing, and a batch stores each valid item once.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hostile import NUL, expressions, keep_hypothesis_out_of_the_work_tree, stored
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from support.clients import Caller, make_caller
from support.reports import phq9

keep_hypothesis_out_of_the_work_tree()
PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REFUSALS_NAMING_A_FIELD = (400, 409, 413, 415, 422)

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
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "2026-11-20T09:30:00-16:05",
            "²",
            "٣",
            " ",
            "\u2028",
            "Patient/" + NUL,
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
deep_values = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * n)


def _encode(value: Any) -> bytes:
    # json.dumps writes NaN/Infinity and lone surrogates as given: hostile, as clients can be.
    return json.dumps(value).encode()


@pytest.fixture
def prop_caller(app_client: TestClient, engine: Engine) -> Caller:
    """A caller with every scope and admin, in its own tenant (shared by a test's examples)."""
    return make_caller(app_client, engine, "system/*.cruds careloop/admin")


def _check_answer(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code in REFUSALS_NAMING_A_FIELD:
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert all(issue.get("expression") for issue in body["issue"]), body
        assert expressions(response)


ENDPOINTS = [
    ("POST", "/v1/symptom-reports"),
    ("POST", "/v1/symptom-reports/batch"),
    ("POST", "/v1/telehealth-sessions"),
    ("POST", "/v1/notification-routes"),
    ("POST", "/admin/ehr-connections"),
    ("POST", "/admin/patient-links"),
    ("POST", "/v1/consents"),
    ("POST", "/v1/risk-signals"),
    ("POST", "/v1/group-sessions"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
@PROPERTY_SETTINGS
@given(body=json_values | deep_values)
def test_any_json_body_is_answered_below_500(
    prop_caller: Caller, engine: Engine, method: str, url: str, body: Any
) -> None:
    before = stored(engine, prop_caller.tenant)
    content = body.encode() if isinstance(body, str) and body.startswith("[") else _encode(body)
    response = prop_caller.http.request(
        method,
        url,
        content=content,
        headers={**prop_caller.headers, "Content-Type": "application/json"},
    )
    _check_answer(response)
    if response.status_code >= 400:
        assert stored(engine, prop_caller.tenant) == before


REPORT_FIELDS = [
    ("patient",),
    ("patient", "system"),
    ("patient", "value"),
    ("instrument",),
    ("effective",),
    ("answers",),
    ("answers", 8),
    ("difficulty",),
    ("value",),
    ("note",),
    ("device",),
    ("device", "name"),
    ("device", "version"),
    ("app_report_id",),
]


def _report(tag: str) -> dict[str, Any]:
    report = phq9(f"prop-{tag}", app_report_id=f"r-{tag}", note="ok")
    report["device"] = {"name": "app", "version": "1"}
    return report


def _mutated(report: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    target: Any = report
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return report


@PROPERTY_SETTINGS
@given(path=st.sampled_from(REPORT_FIELDS), value=json_values)
def test_any_report_field_value_is_refused_by_name_or_stored_once(
    prop_caller: Caller, engine: Engine, path: tuple[str | int, ...], value: Any
) -> None:
    before = stored(engine, prop_caller.tenant)
    report = _mutated(_report(uuid.uuid4().hex[:8]), path, value)
    response = prop_caller.post(
        "/v1/symptom-reports",
        content=_encode(report),
        headers={"Content-Type": "application/json"},
    )
    _check_answer(response)
    after = stored(engine, prop_caller.tenant)
    if response.status_code >= 400:
        assert after == before
        if response.status_code == 422 and path[0] != "instrument":
            # (another instrument makes the answers the invalid field)
            field = ".".join(str(p) for p in path if isinstance(p, str))
            assert any(
                e.split("[")[0].startswith(field.split(".")[0]) for e in expressions(response)
            )
    else:
        assert response.status_code == 201, response.text
        assert after["symptom_report"] == before["symptom_report"] + 1


@PROPERTY_SETTINGS
@given(
    items=st.lists(
        st.tuples(st.booleans(), st.sampled_from(REPORT_FIELDS), json_values), max_size=8
    )
)
def test_a_batch_stores_each_valid_item_exactly_once(
    prop_caller: Caller, engine: Engine, items: list[tuple[bool, tuple[str | int, ...], Any]]
) -> None:
    reports = []
    for good, path, value in items:
        report = _report(uuid.uuid4().hex[:8])
        reports.append(report if good else _mutated(report, path, value))
    before = stored(engine, prop_caller.tenant)
    response = prop_caller.post(
        "/v1/symptom-reports/batch",
        content=_encode({"reports": reports}),
        headers={"Content-Type": "application/json"},
    )
    if response.status_code != 200:
        # Only a body the JSON parser refuses (NaN, lone surrogates) fails the whole batch.
        assert response.status_code == 400, response.text
        assert stored(engine, prop_caller.tenant) == before
        return
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(reports)))
    for (good, _, _), result in zip(items, results, strict=True):
        assert result["status"] < 500
        if good:
            assert result["status"] == 201, result
        elif result["status"] >= 400:
            issues = result["outcome"]["issue"]
            assert all(i.get("expression", [""])[0].startswith("reports[") for i in issues)
    created = sum(r["status"] == 201 for r in results)
    assert stored(engine, prop_caller.tenant)["symptom_report"] == (
        before["symptom_report"] + created
    )
    again = prop_caller.post(
        "/v1/symptom-reports/batch",
        content=_encode({"reports": reports}),
        headers={"Content-Type": "application/json"},
    )
    assert [r["status"] for r in again.json()["results"]] == [
        200 if r["status"] in (200, 201) else r["status"] for r in results
    ]
    assert stored(engine, prop_caller.tenant)["symptom_report"] == (
        before["symptom_report"] + created
    )


SESSION = {
    "patient": {"system": "https://app.example/patients", "value": "t-prop"},
    "start": "2026-11-24T15:00:00Z",
}
SESSION_FIELDS = [
    "patient",
    "practitioner",
    "status",
    "modality",
    "start",
    "end",
    "platform",
    "reason",
    "app_session_id",
]


@PROPERTY_SETTINGS
@given(field=st.sampled_from(SESSION_FIELDS), value=json_values)
def test_any_session_field_value_is_answered_below_500(
    prop_caller: Caller, engine: Engine, field: str, value: Any
) -> None:
    before = stored(engine, prop_caller.tenant)
    body = {**SESSION, field: value}
    response = prop_caller.post(
        "/v1/telehealth-sessions",
        content=_encode(body),
        headers={"Content-Type": "application/json"},
    )
    _check_answer(response)
    if response.status_code >= 400:
        assert stored(engine, prop_caller.tenant) == before
    created = prop_caller.post("/v1/telehealth-sessions", json=SESSION).json()["id"]
    middle = stored(engine, prop_caller.tenant)
    patch = {} if field == "app_session_id" else {field: value}
    response = prop_caller.http.patch(
        f"/v1/telehealth-sessions/{created}",
        content=_encode(patch),
        headers={**prop_caller.headers, "Content-Type": "application/json"},
    )
    _check_answer(response)
    if response.status_code >= 400:
        assert stored(engine, prop_caller.tenant) == middle


@PROPERTY_SETTINGS
@given(
    segment=st.text(max_size=80),
    params=st.dictionaries(st.text(max_size=10), st.text(max_size=60), max_size=3),
)
def test_any_path_and_query_value_is_answered_below_500(
    prop_caller: Caller, segment: str, params: dict[str, str]
) -> None:
    from urllib.parse import quote

    quoted = quote(segment, safe="")
    for url in (
        f"/v1/symptom-reports/{quoted}",
        f"/v1/telehealth-sessions/{quoted}",
        f"/v1/alerts/{quoted}",
        f"/admin/ehr-connections/{quoted}",
        "/v1/alerts",
    ):
        response = prop_caller.get(url, params=params)
        assert response.status_code < 500, response.text
        assert response.status_code == 200 or response.json()["resourceType"] == "OperationOutcome"


def _consent_body(tag: str) -> dict[str, Any]:
    return {
        "patient": {"system": "https://app.example/patients", "value": f"c-{tag}"},
        "decision": "deny",
        "purpose": "research-export",
        "period": {"start": "2026-01-01T00:00:00Z", "end": "2036-01-01T00:00:00Z"},
        "app_consent_id": f"consent-{tag}",
    }


def _risk_body(tag: str) -> dict[str, Any]:
    return {
        "patient": {"system": "https://app.example/patients", "value": f"r-{tag}"},
        "source": "chatbot",
        "category": "self-harm",
        "level": "moderate",
        "model": {"name": "ExampleSafetyClassifier", "version": "2.1.0"},
        "detected": "2026-11-20T09:30:00Z",
        "conversation": f"conv-{tag}",
        "app_signal_id": f"s-{tag}",
    }


def _group_body(tag: str) -> dict[str, Any]:
    return {
        "app_session_id": f"grp-{tag}",
        "facilitator": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
        "modality": "video",
        "status": "finished",
        "start": "2026-11-24T17:00:00Z",
        "end": "2026-11-24T18:00:00Z",
        "participants": [
            {
                "patient": {"system": "https://app.example/patients", "value": f"a-{tag}"},
                "attendance": "attended",
            },
            {
                "patient": {"system": "https://app.example/patients", "value": f"b-{tag}"},
                "attendance": "left-early",
                "left_at": "2026-11-24T17:40:00Z",
            },
        ],
    }


NEWEST: dict[str, tuple[Any, list[tuple[str | int, ...]]]] = {
    "/v1/consents": (
        _consent_body,
        [
            ("patient",),
            ("patient", "system"),
            ("patient", "value"),
            ("decision",),
            ("purpose",),
            ("period",),
            ("period", "start"),
            ("period", "end"),
            ("app_consent_id",),
            ("note",),  # no such field: refused
        ],
    ),
    "/v1/risk-signals": (
        _risk_body,
        [
            ("patient",),
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
            ("text",),  # no field for the conversation's words: refused
        ],
    ),
    "/v1/group-sessions": (
        _group_body,
        [
            ("app_session_id",),
            ("facilitator",),
            ("facilitator", "value"),
            ("modality",),
            ("status",),
            ("start",),
            ("end",),
            ("participants",),
            ("participants", 0, "patient", "value"),
            ("participants", 0, "attendance"),
            ("participants", 1, "left_at"),
        ],
    ),
}
"""The newest endpoints: a valid body per example (unique ids) and the fields to mutate."""


def _named(url: str, path: tuple[str | int, ...]) -> set[str]:
    """The fields a refusal of ``path``'s value may name (a moved bound makes the other wrong)."""
    first = str(path[0])
    if url == "/v1/group-sessions" and first in ("start", "end"):
        return {"start", "end", "participants"}  # a participant's left_at leaves the session
    return {first}


@pytest.mark.parametrize("url", list(NEWEST))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_field_value_of_the_newest_endpoints_is_refused_by_name_or_stored_once(
    prop_caller: Caller, engine: Engine, url: str, data: st.DataObject
) -> None:
    make, fields = NEWEST[url]
    path = data.draw(st.sampled_from(fields), label="path")
    value = data.draw(json_values, label="value")
    body = _mutated(make(uuid.uuid4().hex[:10]), path, value)
    before = stored(engine, prop_caller.tenant)
    response = prop_caller.post(
        url, content=_encode(body), headers={"Content-Type": "application/json"}
    )
    _check_answer(response)
    after = stored(engine, prop_caller.tenant)
    if response.status_code >= 400:
        assert after == before, response.text
        if response.status_code == 422:
            named = _named(url, path)
            found = expressions(response)
            assert any(e.split(".")[0].split("[")[0] in named for e in found), (path, found)
        return
    assert response.status_code == 201, response.text
    assert after["fhir_resource"] > before["fhir_resource"]
    again = prop_caller.post(
        url, content=_encode(body), headers={"Content-Type": "application/json"}
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == response.json()["id"]
    assert stored(engine, prop_caller.tenant) == after  # stored exactly once


@PROPERTY_SETTINGS
@given(
    segment=st.text(max_size=80),
    system=st.text(max_size=320) | st.sampled_from([NUL, "x" * 5000, "Patient/" + NUL]),
    value=st.text(max_size=220) | st.sampled_from([NUL, "x" * 5000, "\u2028"]),
)
def test_any_path_and_query_value_of_the_newest_endpoints_is_answered_below_500(
    prop_caller: Caller, engine: Engine, segment: str, system: str, value: str
) -> None:
    from urllib.parse import quote

    quoted = quote(segment, safe="")
    before = stored(engine, prop_caller.tenant)
    for method, url in (
        ("GET", f"/v1/risk-signals/{quoted}"),
        ("GET", f"/v1/group-sessions/{quoted}"),
        ("POST", f"/v1/consents/{quoted}/revoke"),
        ("DELETE", f"/v1/consents/{quoted}"),
    ):
        response = prop_caller.http.request(method, url, headers=prop_caller.headers)
        assert response.status_code in (400, 404, 405, 422), (url, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    response = prop_caller.get(
        "/v1/consents", params={"patient.system": system, "patient.value": value}
    )
    _check_answer(response)
    if response.status_code in (400, 422):
        assert set(expressions(response)) <= {"patient.system", "patient.value"}, response.text
    else:
        assert response.status_code == 200, response.text
        assert response.json()["patient"] is None  # nobody by that identifier
    assert stored(engine, prop_caller.tenant) == before
