"""Property-based: whatever body a trusted EHR signs, the CDS services answer 200 or a 4xx
OperationOutcome, never a 5xx. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import atexit
import copy
import shutil
import tempfile
from typing import Any

import orjson
from cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

_home = tempfile.mkdtemp(prefix="careloop-hypothesis-")
atexit.register(shutil.rmtree, _home, ignore_errors=True)
set_hypothesis_home_dir(_home)

FEEDBACK = SERVICE + "/feedback"
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
            "Patient/" + NUL,
            "../../etc",
            "urn:uuid:" + "0" * 36,
            "9999-12-31T23:59:59-14:00",
            "2026-11-20T09:30:00-16:05",
            "\u2028",
            " ",
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
HOOK_PATHS = [
    ("hook",),
    ("hookInstance",),
    ("fhirServer",),
    ("context",),
    ("context", "userId"),
    ("context", "patientId"),
    ("context", "encounterId"),
    ("prefetch",),
    ("prefetch", "patient"),
    ("prefetch", "patient", "id"),
    ("prefetch", "patient", "identifier"),
    ("prefetch", "patient", "resourceType"),
]
FEEDBACK_PATHS = [
    ("feedback",),
    ("feedback", 0),
    ("feedback", 0, "card"),
    ("feedback", 0, "outcome"),
    ("feedback", 0, "acceptedSuggestions"),
    ("feedback", 0, "overrideReason"),
    ("feedback", 0, "overrideReason", "reason"),
    ("feedback", 0, "overrideReason", "userComment"),
    ("feedback", 0, "outcomeTimestamp"),
]


def _hook() -> dict[str, Any]:
    return hook_request(
        "ehr-h1",
        {
            "resourceType": "Patient",
            "id": "ehr-h1",
            "identifier": [{"system": "https://app.example/patients", "value": "h-1"}],
        },
    )


def _feedback() -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                "outcome": "overridden",
                "acceptedSuggestions": [],
                "overrideReason": {"reason": {"code": "x"}, "userComment": "synthetic"},
                "outcomeTimestamp": "2026-12-01T14:12:20Z",
            }
        ]
    }


def _replace(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


def _check(app_client: TestClient, ehr: SigningEhr, url: str, raw: bytes) -> None:
    headers = {**ehr.headers(url), "Content-Type": "application/json"}
    response = app_client.post(url, content=raw, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert 400 <= response.status_code < 500
        assert response.json()["resourceType"] == "OperationOutcome"


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return b'{"not": "encodable"}'


@PROPERTY_SETTINGS
@given(path=st.sampled_from(HOOK_PATHS), value=json_values)
def test_hostile_hook_fields_never_5xx(
    app_client: TestClient, ehr: SigningEhr, path: tuple[str, ...], value: Any
) -> None:
    _check(app_client, ehr, SERVICE, _encode(_replace(_hook(), path, value)))


@PROPERTY_SETTINGS
@given(path=st.sampled_from(FEEDBACK_PATHS), value=json_values)
def test_hostile_feedback_fields_never_5xx(
    app_client: TestClient, ehr: SigningEhr, path: tuple[str | int, ...], value: Any
) -> None:
    _check(app_client, ehr, FEEDBACK, _encode(_replace(_feedback(), path, value)))


@PROPERTY_SETTINGS
@given(
    url=st.sampled_from([SERVICE, FEEDBACK]),
    raw=json_values.map(_encode)
    | st.binary(max_size=200)
    | st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
)
def test_hostile_whole_bodies_never_5xx(
    app_client: TestClient, ehr: SigningEhr, url: str, raw: bytes
) -> None:
    _check(app_client, ehr, url, raw)


def _segment(value: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(_encode(value)).decode().rstrip("=")


@PROPERTY_SETTINGS
@given(
    authorization=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300
    )
    | st.tuples(json_values, json_values, st.text(max_size=20)).map(
        lambda t: f"Bearer {_segment(t[0])}.{_segment(t[1])}.{t[2]}"
    )
    | st.tuples(
        st.dictionaries(st.sampled_from(["alg", "kid", "jku", "typ", "crit"]), json_values),
        json_values,
    ).map(lambda t: f"Bearer {_segment(t[0])}.{_segment(t[1])}.AAAA")
)
def test_hostile_authorization_headers_are_401(
    app_client: TestClient, ehr: SigningEhr, authorization: str
) -> None:
    headers = {"Authorization": authorization.encode()}
    response = app_client.get("/cds-services", headers=headers)
    assert response.status_code == 401, response.text
