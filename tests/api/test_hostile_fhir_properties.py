"""Properties of the FHIR API under arbitrary input (hypothesis), on SQLite and PostgreSQL.

Whatever arrives in a body, a path or a query, the answer is below 500; a refusal is an
OperationOutcome that names a field; and a refused write leaves the store as it was.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from support.clients import Caller
from test_hostile_fhir import observation, stored_rows

from careloop.services.fhirapi.openapi import CREATABLE, SEARCHABLE, UPDATABLE

BOUNDED = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE_TEXT = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "²",
        "٣",
        "１２",
        "9" * 40,
        "x" * 400,
        "9999-12-31",
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+05:00",
        "ge9999-12-31",
        "urn:uuid:00000000-0000-4000-8000-000000000000",
        "Patient/" + "p" * 80,
        'W/"²"',
        "",
    ]
)
TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40), st.text(max_size=400, alphabet="a\x00|,$"))
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1e20, 2**31, 2**63, 0.1]),
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=25,
)


def _send(caller: Caller, method: str, url: str, body: Any) -> Any:
    # The standard encoder writes big integers, NaN and Infinity as they are: careloop must
    # refuse those itself.
    content = json.dumps(body, allow_nan=True).encode()
    headers = {**caller.headers, "Content-Type": "application/fhir+json"}
    return caller.http.request(method, url, content=content, headers=headers)


def assert_sound(response: Any) -> None:
    """Below 500, and a refusal is an OperationOutcome with an issue that names a field."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/fhir+json")
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        if response.status_code not in (401, 403, 404, 405):
            assert any(issue.get("expression") for issue in outcome["issue"]), outcome


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    return [_replace(v, rest, new) if i == head else v for i, v in enumerate(value)]


TEMPLATE = observation("Patient/unknown")
LEAVES = _leaves(TEMPLATE)


@BOUNDED
@given(rtype=st.sampled_from([*CREATABLE, "Bundle"]), body=JSON)
def test_any_json_body_is_answered_soundly_and_refusals_write_nothing(
    caller: Caller, engine: Engine, rtype: str, body: Any
) -> None:
    before = stored_rows(engine, caller)
    url = "/fhir" if rtype == "Bundle" else f"/fhir/{rtype}"
    response = _send(caller, "POST", url, body)
    assert_sound(response)
    if response.status_code >= 400:
        assert stored_rows(engine, caller) == before


@BOUNDED
@given(path=st.sampled_from(LEAVES), value=st.one_of(TEXT, NUMBERS, JSON), patient=st.booleans())
def test_a_valid_observation_with_one_hostile_value_is_answered_soundly(
    caller: Caller, engine: Engine, path: tuple[Any, ...], value: Any, patient: bool
) -> None:
    body = _replace(TEMPLATE, path, value)
    if patient:
        # A subject that exists, so the request reaches storage when the rest is valid.
        body["subject"] = {"reference": _patient(caller)}
    before = stored_rows(engine, caller)
    response = _send(caller, "POST", "/fhir/Observation", body)
    assert_sound(response)
    if response.status_code >= 400:
        assert stored_rows(engine, caller) == before
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": body, "request": {"method": "POST", "url": "Observation"}}],
    }
    response = _send(caller, "POST", "/fhir", batch)
    assert response.status_code < 500, response.text[:300]


_PATIENTS: dict[str, str] = {}


def _patient(caller: Caller) -> str:
    if caller.tenant not in _PATIENTS:
        report = {
            "patient": {"system": "https://app.example/patients", "value": "prop-1"},
            "instrument": "mood",
            "value": 5,
            "effective": "2026-11-20T09:30:00Z",
        }
        response = caller.post("/v1/symptom-reports", json=report)
        assert response.status_code in (200, 201), response.text
        _PATIENTS[caller.tenant] = response.json()["patient"]
    return _PATIENTS[caller.tenant]


NAMES = st.one_of(
    st.sampled_from(
        ["_count", "_page", "_sort", "date", "_lastUpdated", "identifier", "code", "_id"]
        + ["patient", "subject", "status", "category", "target", "owner", "code:exact"]
    ),
    TEXT,
)


@BOUNDED
@given(
    rtype=st.sampled_from(SEARCHABLE),
    params=st.lists(st.tuples(NAMES, TEXT), max_size=6),
    strict=st.booleans(),
)
def test_any_search_is_answered_soundly(
    caller: Caller, rtype: str, params: list[tuple[str, str]], strict: bool
) -> None:
    query = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in params)
    headers = {"Prefer": "handling=strict"} if strict else {}
    response = caller.get(f"/fhir/{rtype}?{query}", headers=headers)
    assert_sound(response)


@BOUNDED
@given(
    rtype=st.sampled_from([*SEARCHABLE, "Nothing"]),
    rid=TEXT.filter(lambda t: t not in ("", ".", "..")),
    vid=TEXT.filter(lambda t: t not in ("", ".", "..")),
    etag=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=30),
    existing=st.booleans(),
)
def test_any_path_and_version_is_answered_soundly(
    caller: Caller, engine: Engine, rtype: str, rid: str, vid: str, etag: str, existing: bool
) -> None:
    if existing:  # a resource that exists, so version reads reach its history
        _patient(caller)
        rtype = "Observation"
        rid = caller.get("/fhir/Observation").json()["entry"][0]["resource"]["id"]
    rid_path, vid_path = quote(rid, safe=""), quote(vid, safe="")
    assert_sound(caller.get(f"/fhir/{rtype}/{rid_path}"))
    assert_sound(caller.get(f"/fhir/{rtype}/{rid_path}/_history/{vid_path}"))
    update = UPDATABLE[len(rid) % len(UPDATABLE)]
    before = stored_rows(engine, caller)
    response = caller.http.put(
        f"/fhir/{update}/{rid_path}",
        content=json.dumps({"resourceType": update, "id": rid}).encode(),
        headers={
            **caller.headers,
            "Content-Type": "application/fhir+json",
            "If-Match": etag.encode("latin-1"),  # type: ignore[dict-item]
        },
    )
    assert_sound(response)
    assert stored_rows(engine, caller) == before
