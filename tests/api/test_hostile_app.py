"""Hostile input to the app, admin and auth API: a 4xx OperationOutcome naming the field, never
a 5xx, and nothing written. Each case runs on SQLite and PostgreSQL (PostgreSQL is where NUL,
over-long strings and out-of-range date-times used to surface as 500s)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hostile import NUL, assert_refused, expressions, stored
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller
from support.reports import phq9

from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending

DEEP = 200
FORTY_DIGITS = 10**40


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


REPORT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("system NUL", {"patient": {"system": f"https://a.example/{NUL}", "value": "v"}}, "patient"),
    ("value NUL", {"patient": {"system": "https://a.example", "value": f"p{NUL}1"}}, "patient"),
    ("value long", {"patient": {"system": "https://a.example", "value": "v" * 201}}, "patient"),
    ("system long", {"patient": {"system": "https://a/" + "s" * 300, "value": "v"}}, "patient"),
    ("system space", {"patient": {"system": "not a uri", "value": "v"}}, "patient.system"),
    ("value blank", {"patient": {"system": "https://a.example", "value": "  "}}, "patient.value"),
    ("app id NUL", {"app_report_id": f"r{NUL}"}, "app_report_id"),
    ("app id long", {"app_report_id": "r" * 201}, "app_report_id"),
    ("app id blank", {"app_report_id": " "}, "app_report_id"),
    ("note NUL", {"note": f"called{NUL}"}, "note"),
    ("note long", {"note": "n" * 4001}, "note"),
    ("note blank", {"note": "   "}, "note"),
    ("device NUL", {"device": {"name": f"app{NUL}", "version": "1"}}, "device"),
    ("version NUL", {"device": {"name": "app", "version": f"1{NUL}"}}, "device"),
    ("device long", {"device": {"name": "d" * 201}}, "device.name"),
    ("year 9999 west", {"effective": "9999-12-31T23:59:59-14:00"}, "effective"),
    ("year 9999", {"effective": "9999-12-31T00:00:00Z"}, "effective"),
    ("year 1 east", {"effective": "0001-01-01T00:00:00+14:00"}, "effective"),
    ("offset -16:05", {"effective": "2026-11-20T09:30:00-16:05"}, "effective"),
    ("offset seconds", {"effective": "2026-11-20T09:30:00+01:00:30"}, "effective"),
    ("instrument NUL", {"instrument": f"phq-9{NUL}"}, "instrument"),
    ("answers 40 digits", {"answers": [FORTY_DIGITS] + [0] * 8}, "answers[0]"),
    ("answer 1e308", {"answers": [1e308] + [0] * 8}, "answers[0]"),
    ("difficulty 40 digits", {"difficulty": FORTY_DIGITS}, "difficulty"),
    ("deep note", {"note": _deep(DEEP)}, "note"),
    ("deep unknown", {"extra": _deep(DEEP)}, "extra"),
    ("NUL key", {f"note{NUL}": "x"}, "body"),
]


def _counts_unchanged(engine: Engine, caller: Caller, before: dict[str, int]) -> None:
    assert stored(engine, caller.tenant) == before


@pytest.mark.parametrize(
    ("change", "field"), [c[1:] for c in REPORT_CASES], ids=[c[0] for c in REPORT_CASES]
)
def test_hostile_report_fields_are_refused_by_name(
    caller: Caller, engine: Engine, change: dict[str, Any], field: str
) -> None:
    before = stored(engine, caller.tenant)
    response = caller.post("/v1/symptom-reports", json={**phq9(), **change})
    assert_refused(response, field)
    _counts_unchanged(engine, caller, before)


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"instrument": "mood", "value": 1e308}, "value"),
        ({"instrument": "sleep-duration", "value": 1e308}, "value"),
        ({"instrument": "sleep-duration", "value": -1e308}, "value"),
        ({"instrument": "mood", "value": FORTY_DIGITS}, "value"),
        ({"instrument": "mood", "value": 1e-320}, "value"),
    ],
)
def test_hostile_rating_values_are_refused(
    caller: Caller, engine: Engine, report: dict[str, Any], field: str
) -> None:
    before = stored(engine, caller.tenant)
    body = {"patient": {"system": "s", "value": "v"}, "effective": "2026-11-20T09:30:00Z", **report}
    response = caller.post("/v1/symptom-reports", json=body)
    assert_refused(response, field)
    _counts_unchanged(engine, caller, before)


def test_body_nested_past_the_parser_limit_is_400(caller: Caller) -> None:
    raw = b'{"note": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = caller.post(
        "/v1/symptom-reports", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_refused(response, "body", (400,))


def test_a_bad_item_of_a_batch_stays_its_own_refusal(caller: Caller, engine: Engine) -> None:
    before = stored(engine, caller.tenant)
    items = [
        phq9("b-1", effective="2026-11-20T09:00:00Z"),
        phq9("b-2", note=f"x{NUL}"),
        phq9("b-3", effective="9999-12-31T23:59:59-14:00"),
        phq9("b-4", answers=[FORTY_DIGITS] * 9),
        {"note": _deep(DEEP)},
        "not an object",
        phq9("b-5" + NUL),
        phq9("b-6", effective="2026-11-20T10:00:00Z"),
    ]
    response = caller.post("/v1/symptom-reports/batch", json={"reports": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 422, 422, 422, 422, 422, 201]
    named = {
        1: "reports[1].note",
        2: "reports[2].effective",
        3: "reports[3].answers[0]",
        4: "reports[4]",
        5: "reports[5]",
        6: "reports[6].patient",
    }
    for index, field in named.items():
        found = [e for i in results[index]["outcome"]["issue"] for e in i.get("expression", [])]
        assert any(e.startswith(field) for e in found), (index, found)
    after = stored(engine, caller.tenant)
    assert after["symptom_report"] == before["symptom_report"] + 2
    again = caller.post("/v1/symptom-reports/batch", json={"reports": items})
    assert [r["status"] for r in again.json()["results"]] == [
        200,
        422,
        422,
        422,
        422,
        422,
        422,
        200,
    ]
    assert stored(engine, caller.tenant) == after


SESSION = {
    "patient": {"system": "https://app.example/patients", "value": "t-1"},
    "practitioner": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
    "start": "2026-11-24T15:00:00Z",
}
SESSION_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("patient NUL", {"patient": {"system": "s", "value": NUL}}, "patient"),
    ("practitioner NUL", {"practitioner": {"system": NUL, "value": "1"}}, "practitioner"),
    ("practitioner long", {"practitioner": {"system": "s", "value": "1" * 201}}, "practitioner"),
    ("platform NUL", {"platform": f"video{NUL}"}, "platform"),
    ("platform long", {"platform": "p" * 201}, "platform"),
    ("reason NUL", {"reason": f"follow-up{NUL}"}, "reason"),
    ("reason blank", {"reason": "  "}, "reason"),
    ("app id NUL", {"app_session_id": NUL}, "app_session_id"),
    ("start 9999 west", {"start": "9999-12-31T23:59:59-14:00"}, "start"),
    ("start year 1 east", {"start": "0001-01-01T00:00:00+14:00"}, "start"),
    ("end 9999", {"end": "9999-12-31T23:59:59Z"}, "end"),
    ("end offset -16:05", {"end": "7082-04-29T06:14:39.5014-16:05"}, "end"),
    ("end before start", {"end": "2026-11-24T14:00:00Z"}, "end"),
    ("status NUL", {"status": f"planned{NUL}"}, "status"),
    ("deep", {"reason": _deep(DEEP)}, "reason"),
]


@pytest.mark.parametrize(
    ("change", "field"), [c[1:] for c in SESSION_CASES], ids=[c[0] for c in SESSION_CASES]
)
def test_hostile_session_fields_are_refused_on_create_and_patch(
    caller: Caller, engine: Engine, change: dict[str, Any], field: str
) -> None:
    before = stored(engine, caller.tenant)
    assert_refused(caller.post("/v1/telehealth-sessions", json={**SESSION, **change}), field)
    _counts_unchanged(engine, caller, before)
    created = caller.post("/v1/telehealth-sessions", json=SESSION)
    assert created.status_code == 201, created.text
    session_id = created.json()["id"]
    middle = stored(engine, caller.tenant)
    assert_refused(caller.patch(f"/v1/telehealth-sessions/{session_id}", json=change), field)
    _counts_unchanged(engine, caller, middle)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/symptom-reports/{id}",
        "/v1/telehealth-sessions/{id}",
        "/v1/alerts/{id}",
        "/admin/ehr-connections/{id}",
        "/admin/ehr-connections/{id}/failures",
    ],
)
@pytest.mark.parametrize(
    ("value", "statuses"),
    [
        ("a%00b", (400,)),
        ("a%01b", (400,)),
        ("x" * 5000, (400, 404, 422)),
        (str(FORTY_DIGITS), (404,)),
        ("%C2%B2", (404,)),
    ],
    ids=["NUL", "control", "huge", "40 digits", "superscript"],
)
def test_hostile_path_ids(
    app_client: TestClient, engine: Engine, path: str, value: str, statuses: tuple[int, ...]
) -> None:
    caller = make_caller(app_client, engine, "system/*.cruds careloop/admin")
    response = caller.get(path.format(id=value))
    assert response.status_code in statuses, response.text
    assert expressions(response) or response.status_code == 404


def test_hostile_path_ids_on_writes(caller: Caller, engine: Engine) -> None:
    before = stored(engine, caller.tenant)
    for url in ("/v1/alerts/a%00/acknowledge", "/v1/alerts/" + "a" * 5000 + "/resolve"):
        response = caller.post(url)
        assert response.status_code in (400, 404, 422), response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    response = caller.patch("/v1/telehealth-sessions/s%00", json={"status": "finished"})
    assert_refused(response, "session_id", (400,))
    _counts_unchanged(engine, caller, before)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"patient": f"Patient/{NUL}"}, "patient"),
        ({"patient": "Patient/\x1b[2J"}, "patient"),
        ({"patient": "P" * 5000}, "patient"),
        ({"limit": str(FORTY_DIGITS)}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"limit": "٣"}, "limit"),
        ({"status": f"open{NUL}"}, "status"),
        ({f"sta{NUL}tus": "open"}, "query"),  # a name holding NUL names nothing but the query
    ],
)
def test_hostile_alert_query_values(caller: Caller, params: dict[str, str], field: str) -> None:
    response = caller.get("/v1/alerts", params=params)
    assert response.status_code in (400, 422), response.text
    found = expressions(response)
    assert field in found, found


ROUTE = {"recipient": "oncall", "channel": "webhook", "address": "https://hooks.example/a"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"address": f"https://hooks.example/{NUL}"}, "address"),
        ({"address": "mailto:" + "x" * 2000 + "@example"}, "address"),
        ({"channel": "email", "address": f"a{NUL}@example.org"}, "address"),
        ({"recipient": f"Practitioner/{NUL}"}, "recipient"),
        ({"recipient": "Practitioner/" + "p" * 200}, "recipient"),
        ({"secret": f"whsec_{NUL}"}, "secret"),
        ({"min_severity": FORTY_DIGITS}, "min_severity"),
        ({"address": _deep(DEEP)}, "address"),
    ],
)
def test_hostile_routes_are_refused(
    caller: Caller, engine: Engine, change: dict[str, Any], field: str
) -> None:
    before = stored(engine, caller.tenant)
    assert_refused(caller.post("/v1/notification-routes", json={**ROUTE, **change}), field)
    _counts_unchanged(engine, caller, before)


@pytest.fixture
def open_alert(caller: Caller, engine: Engine, settings: Any) -> str:
    """An open critical alert of the caller's tenant (PHQ-9 item 9 positive)."""
    response = caller.post("/v1/symptom-reports", json=phq9("al-1", [0] * 8 + [1]))
    assert response.status_code == 201, response.text
    run_pending(engine, settings)
    alerts = caller.get("/v1/alerts").json()["alerts"]
    assert len(alerts) == 1
    return str(alerts[0]["id"])


@pytest.mark.parametrize(
    ("action", "body", "field"),
    [
        ("acknowledge", {"by": f"Practitioner/{NUL}"}, "by"),
        ("acknowledge", {"by": "b" * 201}, "by"),
        ("acknowledge", {"by": "Practitioner/dr a"}, "by"),
        ("acknowledge", {"by": "Practitioner/" + "p" * 65}, "by"),
        ("resolve", {"note": f"done{NUL}"}, "note"),
        ("resolve", {"by": "Practitioner/1", "note": "n" * 4001}, "note"),
        ("resolve", {"note": _deep(DEEP)}, "note"),
        ("resolve", [1, 2], "body"),
    ],
)
def test_hostile_alert_lifecycle_bodies(
    caller: Caller, engine: Engine, open_alert: str, action: str, body: Any, field: str
) -> None:
    response = caller.post(f"/v1/alerts/{open_alert}/{action}", json=body)
    assert_refused(response, field)
    assert caller.get(f"/v1/alerts/{open_alert}").json()["status"] == "open"


@pytest.fixture
def admin(app_client: TestClient, engine: Engine) -> Caller:
    """A caller holding careloop/admin."""
    return make_caller(app_client, engine, "system/*.cruds careloop/admin")


CONNECTION = {
    "name": "hospital",
    "fhir_base_url": "https://ehr.example/fhir",
    "client_id": "careloop",
    "scope": "system/Observation.cruds",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": f"hosp{NUL}"}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": "has/slash"}, "name"),
        ({"fhir_base_url": f"https://ehr.example/{NUL}"}, "fhir_base_url"),
        ({"fhir_base_url": "https://ehr example/fhir"}, "fhir_base_url"),
        ({"client_id": f"c{NUL}"}, "client_id"),
        ({"scope": f"system/Observation.rs{NUL}"}, "scope"),
        ({"scope": "system/Observation.rs " * 200}, "scope"),
        ({"alg": FORTY_DIGITS}, "alg"),
    ],
)
def test_hostile_ehr_connections_are_refused(
    admin: Caller, engine: Engine, change: dict[str, Any], field: str
) -> None:
    before = stored(engine, admin.tenant)
    assert_refused(admin.post("/admin/ehr-connections", json={**CONNECTION, **change}), field)
    _counts_unchanged(engine, admin, before)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ehr": f"h{NUL}"}, "ehr"),
        ({"patient": f"Patient/a{NUL}"}, "patient"),
        ({"ehr_patient": "Patient/" + "1" * 100}, "ehr_patient"),
    ],
)
def test_hostile_patient_links_are_refused(
    admin: Caller, change: dict[str, Any], field: str
) -> None:
    link = {"ehr": "hospital", "patient": "Patient/abc", "ehr_patient": "Patient/def"}
    assert_refused(admin.post("/admin/patient-links", json={**link, **change}), field)


def _token(http: TestClient, form: dict[str, str], **kwargs: Any) -> Any:
    return http.post("/oauth/token", data={"grant_type": "client_credentials", **form}, **kwargs)


@pytest.mark.parametrize(
    "form",
    [
        {"client_id": f"cl_{NUL}", "client_secret": "s"},
        {"client_id": "cl_" + "x" * 5000, "client_secret": "s"},
        {"client_id": "cl_x", "client_secret": f"s{NUL}"},
        {"client_id": "cl_x", "client_secret": "s" * 100_000},
        {"client_id": "cl_x", "client_secret": "s", "scope": f"system/*.rs{NUL}"},
    ],
    ids=["id NUL", "id long", "secret NUL", "secret long", "scope NUL"],
)
def test_hostile_token_requests_are_oauth_errors(
    app_client: TestClient, form: dict[str, str]
) -> None:
    response = _token(app_client, form)
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client", "invalid_scope")


def test_hostile_basic_credentials(app_client: TestClient, caller: Caller) -> None:
    import base64

    for user in (f"{caller.client_id}%00", "%00", "x" * 5000):
        raw = base64.b64encode(f"{user}:{caller.client_secret}".encode()).decode()
        response = _token(app_client, {}, headers={"Authorization": f"Basic {raw}"})
        assert response.status_code in (400, 401), response.text


def _assertion(client_id: str, key: RSAKey, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{BASE_URL}/oauth/token",
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    return jwt.encode(
        {"alg": "RS384", "kid": key.kid, "typ": "JWT"}, body, key, algorithms=["RS384"]
    )


@pytest.mark.parametrize(
    "claims",
    [
        {"jti": "j" * 201},
        {"jti": f"j{NUL}"},
        {"jti": FORTY_DIGITS},
        {"jti": ["a"]},
        {"exp": FORTY_DIGITS},
        {"exp": 1e308},
        {"exp": "soon"},
        {"iss": "cl_" + "x" * 5000},
        {"iss": f"cl_{NUL}"},
    ],
    ids=[
        "jti long",
        "jti NUL",
        "jti number",
        "jti list",
        "exp 40 digits",
        "exp 1e308",
        "exp text",
        "iss long",
        "iss NUL",
    ],
)
def test_hostile_client_assertions_are_invalid_client(
    app_client: TestClient, engine: Engine, claims: dict[str, Any]
) -> None:
    from joserfc.jwk import KeySet

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with session_scope(engine) as session:
        client_id = create_client(
            session,
            "backend",
            "system/Observation.rs",
            "tenant-" + uuid.uuid4().hex[:8],
            jwks=KeySet([key]).as_dict(private=False),
        ).client_id
    form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _assertion(client_id, key, **claims),
    }
    response = _token(app_client, form)
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] in ("invalid_request", "invalid_client")
    assert (
        _token(app_client, {**form, "client_assertion": _assertion(client_id, key)}).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/launch", {"iss": f"https://ehr.example/{NUL}", "launch": "l"}, "iss"),
        ("/launch", {"iss": "https://ehr.example", "launch": f"l{NUL}"}, "launch"),
        ("/launch/standalone", {"iss": "https://ehr.example/\x07"}, "iss"),
        ("/launch/callback", {"code": f"c{NUL}", "state": "s"}, "code"),
        ("/launch/callback", {"code": "c", "state": "s" * 201}, "state"),
    ],
)
def test_hostile_launch_parameters(
    app_client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    response = app_client.get(path, params=params, follow_redirects=False)
    assert response.status_code in (400, 422), response.text
    assert field in expressions(response)


def test_jwks_ignores_hostile_query(app_client: TestClient) -> None:
    response = app_client.get("/.well-known/jwks.json", params={"x": NUL})
    assert_refused(response, "x", (400,))
    assert app_client.get("/.well-known/jwks.json").status_code == 200


def test_hostile_bearer_tokens_are_401(app_client: TestClient) -> None:
    import base64

    deep = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).rstrip(b"=").decode()
    for token in (f"{deep}.e30.c2ln", "a" * 20_000, "a.b.c", "....", f"{deep}.{deep}.x"):
        response = app_client.get("/v1/alerts", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, response.text
        assert response.json()["resourceType"] == "OperationOutcome"


def test_patient_link_ids_longer_than_a_fhir_id_are_refused(admin: Caller, engine: Engine) -> None:
    assert admin.post("/admin/ehr-connections", json=CONNECTION).status_code == 201
    patient = admin.post("/v1/symptom-reports", json=phq9("link-1")).json()["patient"]
    before = stored(engine, admin.tenant)
    link = {"ehr": "hospital", "patient": patient, "ehr_patient": "Patient/" + "1" * 65}
    assert_refused(admin.post("/admin/patient-links", json=link), "ehr_patient")
    assert stored(engine, admin.tenant) == before
    link["ehr_patient"] = "Patient/" + "1" * 64
    assert admin.post("/admin/patient-links", json=link).status_code == 201
