"""Hostile input to the FHIR API: always a 4xx OperationOutcome naming the field, nothing written.

Each class of the production report is sent to every FHIR endpoint it reaches: NUL characters,
strings longer than their column, date-times Python or PostgreSQL cannot hold, Bundle entries
of the wrong shape, deep nesting, forged page cursors, non-ASCII and huge digits, huge numbers.
Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, func, select
from support.clients import Caller
from support.reports import phq9

from careloop.services.store.models import FhirResource, SearchToken
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending

LONG = "x" * 400
NUL = "a\x00b"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def stored_rows(engine: Engine, caller: Caller) -> tuple[int, int]:
    """The tenant's resource and search-token rows."""
    with session_scope(engine) as session:
        tenant = session.execute(select(Tenant.id).where(Tenant.name == caller.tenant)).scalar()
        resources = session.execute(
            select(func.count()).where(FhirResource.tenant_id == tenant)  # type: ignore[arg-type]
        ).scalar_one()
        tokens = session.execute(
            select(func.count()).where(SearchToken.tenant_id == tenant)  # type: ignore[arg-type]
        ).scalar_one()
    return int(resources), int(tokens)


def expressions(body: dict[str, Any]) -> list[str]:
    """Every issue expression of an OperationOutcome."""
    assert body["resourceType"] == "OperationOutcome", body
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def assert_refused(response: Any, field: str, statuses: tuple[int, ...] = (400, 422)) -> None:
    """A 4xx OperationOutcome whose issues name ``field`` (or an element inside it)."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/fhir+json")
    named = expressions(response.json())
    assert any(e == field or e.startswith((f"{field}.", f"{field}[")) for e in named), named


@pytest.fixture
def patient_ref(caller: Caller) -> str:
    """A patient of the caller's tenant."""
    response = caller.post("/v1/symptom-reports", json=phq9("h-1"))
    assert response.status_code == 201, response.text
    return str(response.json()["patient"])


def observation(patient: str, **extra: Any) -> dict[str, Any]:
    """A valid Observation of ``patient``."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "survey"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": "2026-11-23T08:00:00Z",
        "valueInteger": 7,
        "identifier": [{"system": "https://app.example/obs", "value": "o-1"}],
        **extra,
    }


def questionnaire_response(patient: str, **extra: Any) -> dict[str, Any]:
    """A valid PHQ-9 QuestionnaireResponse of ``patient`` (all answers 0)."""
    from careloop.fhir.terminology import SCORED_INSTRUMENTS

    phq = SCORED_INSTRUMENTS["phq-9"]
    option = phq.answers[0]
    items = [
        {
            "linkId": item.code,
            "answer": [{"valueCoding": {"system": "http://loinc.org", "code": option.code}}],
        }
        for item in phq.items
    ]
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "questionnaire": phq.questionnaire,
        "subject": {"reference": patient},
        "authored": "2026-11-22T10:00:00Z",
        "identifier": {"system": "https://app.example/qr", "value": "qr-h"},
        "item": items,
        **extra,
    }


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"url": "https://app.example/x", "valueString": "leaf"}
    for _ in range(depth):
        value = {"url": "https://app.example/x", "extension": [value]}
    return value


BAD_OBSERVATIONS: list[tuple[str, dict[str, Any], str]] = [
    ("nul-identifier", {"identifier": [{"system": "s", "value": NUL}]}, "identifier[0].value"),
    ("nul-system", {"identifier": [{"system": NUL, "value": "v"}]}, "identifier[0].system"),
    (
        "nul-code",
        {"code": {"coding": [{"system": "http://loinc.org", "code": NUL}]}},
        "code.coding[0].code",
    ),
    ("nul-note", {"note": [{"text": NUL}]}, "note[0].text"),
    ("long-system", {"identifier": [{"system": LONG, "value": "v"}]}, "identifier[0].system"),
    ("long-value", {"identifier": [{"system": "s", "value": LONG}]}, "identifier[0].value"),
    (
        "long-code",
        {"code": {"coding": [{"system": "http://loinc.org", "code": LONG}]}},
        "code.coding[0].code",
    ),
    (
        "long-category",
        {"category": [{"coding": [{"system": CATEGORY, "code": LONG}]}]},
        "category[0].coding[0].code",
    ),
    ("year-9999", {"effectiveDateTime": "9999-12-31"}, "effectiveDateTime"),
    ("year-9999-west", {"effectiveDateTime": "9999-12-31T23:59:59-05:00"}, "effectiveDateTime"),
    ("year-1-east", {"effectiveDateTime": "0001-01-01T00:00:00+05:00"}, "effectiveDateTime"),
    (
        "period-9999",
        {"effectivePeriod": {"start": "2026-01-01", "end": "9999-12-31"}},
        "effectivePeriod.end",
    ),
    ("quantity-1e308", {"valueQuantity": {"value": 1e308}}, "valueQuantity.value"),
    ("quantity-1e20", {"valueQuantity": {"value": 1e20}}, "valueQuantity.value"),
    ("deep-extension", {"extension": [_nested(70)]}, "extension[0]"),
]


@pytest.mark.parametrize(
    ("change", "field"),
    [pytest.param(c, f, id=name) for name, c, f in BAD_OBSERVATIONS],
)
def test_hostile_observation_is_refused_and_nothing_written(
    caller: Caller, engine: Engine, patient_ref: str, change: dict[str, Any], field: str
) -> None:
    body = observation(patient_ref)
    body.pop("valueInteger") if "valueQuantity" in change else None
    body.pop("effectiveDateTime") if "effectivePeriod" in change else None
    before = stored_rows(engine, caller)
    response = caller.post("/fhir/Observation", json={**body, **change})
    assert_refused(response, f"Observation.{field}")
    assert stored_rows(engine, caller) == before
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {**body, **change}, "request": {"method": "POST", "url": "Observation"}}
        ],
    }
    result = caller.post("/fhir", json=batch)
    assert result.status_code == 200, result.text
    entry = result.json()["entry"][0]["response"]
    assert entry["status"] in ("400", "422"), entry
    named = [e for i in entry["outcome"]["issue"] for e in i.get("expression", [])]
    assert any(e.startswith(f"Bundle.entry[0].resource.{field}") for e in named), named
    assert stored_rows(engine, caller) == before


def _managed(rtype: str, patient: str) -> dict[str, Any]:
    bodies: dict[str, dict[str, Any]] = {
        "CarePlan": {"status": "active", "intent": "plan", "subject": {"reference": patient}},
        "Goal": {
            "lifecycleStatus": "active",
            "description": {"text": "PHQ-9 below 10"},
            "subject": {"reference": patient},
        },
        "CareTeam": {"status": "active", "subject": {"reference": patient}},
        "Practitioner": {},
        "PractitionerRole": {},
        "Consent": {
            "status": "active",
            "scope": {"text": "treatment"},
            "category": [{"text": "treatment"}],
            "patient": {"reference": patient},
        },
    }
    return {"resourceType": rtype, **bodies[rtype]}


MANAGED_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (rtype, name, change, field)
    for rtype in ("CarePlan", "Goal", "CareTeam", "Practitioner", "PractitionerRole", "Consent")
    for name, change, field in [
        ("nul-identifier", {"identifier": [{"system": "s", "value": NUL}]}, "identifier[0].value"),
        (
            "long-identifier",
            {"identifier": [{"system": "s", "value": LONG}]},
            "identifier[0].value",
        ),
        ("long-system", {"identifier": [{"system": LONG, "value": "v"}]}, "identifier[0].system"),
    ]
] + [
    (
        "PractitionerRole",
        "long-practitioner",
        {"practitioner": {"reference": "Practitioner/" + LONG}},
        "practitioner.reference",
    ),
    ("Consent", "year-9999", {"dateTime": "9999-12-31"}, "dateTime"),
    ("Consent", "year-1-east", {"dateTime": "0001-01-01T00:00:00+05:00"}, "dateTime"),
]


@pytest.mark.parametrize(
    ("rtype", "change", "field"),
    [pytest.param(r, c, f, id=f"{r}-{name}") for r, name, c, f in MANAGED_CASES],
)
def test_hostile_managed_resource_is_refused_on_create_and_update(
    caller: Caller, engine: Engine, patient_ref: str, rtype: str, change: dict[str, Any], field: str
) -> None:
    before = stored_rows(engine, caller)
    response = caller.post(f"/fhir/{rtype}", json={**_managed(rtype, patient_ref), **change})
    assert_refused(response, f"{rtype}.{field}")
    assert stored_rows(engine, caller) == before
    created = caller.post(f"/fhir/{rtype}", json=_managed(rtype, patient_ref))
    assert created.status_code == 201, created.text
    current = created.json()
    before = stored_rows(engine, caller)
    response = caller.http.put(
        f"/fhir/{rtype}/{current['id']}", json={**current, **change}, headers=caller.headers
    )
    assert_refused(response, f"{rtype}.{field}")
    assert stored_rows(engine, caller) == before
    assert caller.get(f"/fhir/{rtype}/{current['id']}").headers["etag"] == 'W/"1"'


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"authored": "0001-01-01T00:00:00+05:00"}, "authored", id="year-1-east"),
        pytest.param({"authored": "9999-12-31T23:59:59-05:00"}, "authored", id="year-9999-west"),
        pytest.param(
            {"identifier": {"system": "s", "value": NUL}}, "identifier.value", id="nul-identifier"
        ),
        pytest.param(
            {"identifier": {"system": LONG, "value": "v"}}, "identifier.system", id="long-system"
        ),
        pytest.param({"questionnaire": "https://q/" + LONG}, "questionnaire", id="long-canonical"),
    ],
)
def test_hostile_questionnaire_response_is_refused(
    caller: Caller, engine: Engine, patient_ref: str, change: dict[str, Any], field: str
) -> None:
    before = stored_rows(engine, caller)
    response = caller.post(
        "/fhir/QuestionnaireResponse", json=questionnaire_response(patient_ref, **change)
    )
    assert_refused(response, f"QuestionnaireResponse.{field}")
    assert stored_rows(engine, caller) == before


@pytest.fixture
def observation_id(caller: Caller, patient_ref: str) -> str:
    """An Observation of the caller's tenant."""
    response = caller.post("/fhir/Observation", json=observation(patient_ref))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    "rid", ["a%00b", "x" * 65, "%C2%B2", "a b", "a%7Cb", "%D9%A3"], ids=lambda r: r[:8]
)
def test_malformed_ids_in_the_path_are_refused(caller: Caller, rid: str) -> None:
    assert_refused(caller.get(f"/fhir/Observation/{rid}"), "id", (400, 404))
    assert_refused(caller.get(f"/fhir/Observation/{rid}/_history/1"), "id", (400, 404))
    put = caller.http.put(
        f"/fhir/CarePlan/{rid}", json={"resourceType": "CarePlan"}, headers=caller.headers
    )
    assert_refused(put, "id", (400, 404))
    task = caller.http.put(
        f"/fhir/Task/{rid}", json={"resourceType": "Task"}, headers=caller.headers
    )
    assert_refused(task, "id", (400, 404))


@pytest.mark.parametrize("vid", ["%C2%B2", "%D9%A3", "1" * 40, "-1", "1.0", "0x1", "9" * 10])
def test_malformed_version_ids_are_refused(caller: Caller, observation_id: str, vid: str) -> None:
    response = caller.get(f"/fhir/Observation/{observation_id}/_history/{vid}")
    assert_refused(response, "vid", (400, 404))


@pytest.mark.parametrize("etag", ['W/"²"', 'W/"٣"', f'W/"{"1" * 40}"', "W/", 'W/"-1"', '"1e3"'])
def test_malformed_if_match_is_refused(caller: Caller, engine: Engine, etag: str) -> None:
    created = caller.post("/fhir/Practitioner", json={"resourceType": "Practitioner"}).json()
    before = stored_rows(engine, caller)
    response = caller.http.put(
        f"/fhir/Practitioner/{created['id']}",
        json=created,
        headers={**caller.headers, "If-Match": etag.encode()},  # type: ignore[dict-item]
    )
    assert_refused(response, "If-Match", (400, 412))
    assert stored_rows(engine, caller) == before


@pytest.mark.parametrize(
    "header",
    [
        "identifier=" + LONG + "|v",
        "identifier=s|" + LONG,
        "identifier=²|٣",
        "identifier",
        "=|",
        "identifier=s|v&identifier=t|w",
        "x" * 5000,
    ],
    ids=lambda h: h[:12],
)
def test_malformed_if_none_exist_is_refused_or_finds_nothing(
    caller: Caller, engine: Engine, patient_ref: str, header: str
) -> None:
    response = caller.post(
        "/fhir/Observation",
        json=observation(patient_ref),
        headers={"If-None-Exist": header.encode()},  # type: ignore[dict-item]
    )
    if response.status_code != 201:
        assert_refused(response, "If-None-Exist", (400, 412))


def _token(payload: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


FORGED_PAGES = [
    "garbage",
    "%00",
    "%C2%B2",
    _token({"s": "x", "k": None, "q": None, "o": 0}),
    _token({"s": 1, "k": {"a": 1}, "q": "abc", "o": 0}),
    _token({"s": 10**18, "k": None, "q": 10**18, "o": 0}),
    _token({"s": 1, "k": "not-a-date", "q": 1, "o": 0}),
    _token([1, 2, 3]),
    _token("string"),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


@pytest.mark.parametrize("page", FORGED_PAGES, ids=lambda p: p[:10])
@pytest.mark.parametrize("sort", ["", "-date", "_lastUpdated", "_id"])
def test_forged_page_cursors_are_refused(
    caller: Caller, observation_id: str, page: str, sort: str
) -> None:
    query = f"_page={page}" + (f"&_sort={sort}" if sort else "")
    assert_refused(caller.get(f"/fhir/Observation?{query}"), "_page", (400,))


def test_a_page_cursor_of_another_search_or_sort_is_refused(caller: Caller) -> None:
    for day in (1, 2, 3):
        response = caller.post(
            "/v1/symptom-reports", json=phq9("pg", effective=f"2026-11-0{day}T09:00:00Z")
        )
        assert response.status_code == 201
    page = caller.get("/fhir/Observation?_count=1&_sort=-date").json()
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    token = next_url.split("_page=")[1]
    assert caller.get(f"/fhir/Observation?_count=1&_sort=-date&_page={token}").status_code == 200
    assert_refused(caller.get(f"/fhir/Observation?_sort=_id&_page={token}"), "_page", (400,))
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert_refused(caller.get(f"/fhir/Observation?_sort=-date&_page={tampered}"), "_page", (400,))


SEARCHES = [
    ("_count", "%C2%B2"),
    ("_count", "%D9%A3"),
    ("_count", "1" * 40),
    ("_count", "-1"),
    ("date", "9999-12-31"),
    ("date", "ge9999-12-31"),
    ("date", "9999-12-31T23:59:59-05:00"),
    ("date", "ge0001-01-01T00:00:00%2B05:00"),
    ("date", "%00"),
    ("date", "2026-13-45"),
    ("_lastUpdated", "9999-12-31"),
    ("_lastUpdated", "lt0001-01-01T00:00:00%2B05:00"),
    ("identifier", "a%00b"),
    ("identifier", "s|a%00b"),
    ("code", "%00"),
    ("_id", "a%00b"),
    ("patient", "Patient/a%00b"),
    ("status", "%00"),
    ("category", "x" * 3000),
    ("identifier", ",".join(["s|v"] * 500)),
]


@pytest.mark.parametrize(("param", "value"), SEARCHES, ids=lambda v: str(v)[:16])
def test_hostile_search_parameters_are_refused(caller: Caller, param: str, value: str) -> None:
    assert_refused(caller.get(f"/fhir/Observation?{param}={value}"), param, (400,))


@pytest.mark.parametrize(
    ("param", "value", "total"),
    [
        ("date", "lt0001-01-02", 0),
        ("date", "ge9998-12-31", 0),
        ("identifier", "s|" + LONG, 0),
        ("_count", "100000", 2),  # the report's Observation and the posted one
    ],
)
def test_extreme_but_valid_searches_answer(
    caller: Caller, observation_id: str, param: str, value: str, total: int
) -> None:
    response = caller.get("/fhir/Observation", params={param: value})
    assert response.status_code == 200, response.text
    assert response.json()["total"] == total


def _bundle(kind: str, *entries: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _post_entry(resource: Any, url: Any = "Observation", **extra: Any) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "POST", "url": url}, **extra}


BAD_ENTRIES: list[tuple[str, Any, str]] = [
    ("entry-string", "not an entry", "Bundle.entry[0]"),
    ("request-string", {"resource": {}, "request": "POST Observation"}, "Bundle.entry[0].request"),
    ("request-list", {"resource": {}, "request": ["POST"]}, "Bundle.entry[0].request"),
    (
        "if-none-exist-number",
        {"resource": {}, "request": {"method": "POST", "url": "Observation", "ifNoneExist": 3}},
        "Bundle.entry[0].request.ifNoneExist",
    ),
    ("full-url-object", {**_post_entry({}), "fullUrl": {"a": 1}}, "Bundle.entry[0].fullUrl"),
    ("url-number", _post_entry({}, 42), "Bundle.entry[0].request.url"),
    ("url-nul", _post_entry({}, "Obser\x00vation"), "Bundle.entry[0].request.url"),
    (
        "method-list",
        {"resource": {}, "request": {"method": [], "url": "Observation"}},
        "Bundle.entry[0].request.method",
    ),
    ("resource-list", _post_entry([]), "Bundle.entry[0].resource"),
    (
        "if-none-exist-garbled",
        {"resource": {}, "request": {"method": "POST", "url": "Observation", "ifNoneExist": "x"}},
        "Bundle.entry[0].request.ifNoneExist",
    ),
    (
        "full-url-long",
        {**_post_entry({}), "fullUrl": "urn:uuid:" + LONG},
        "Bundle.entry[0].fullUrl",
    ),
]


@pytest.mark.parametrize(("entry", "field"), [pytest.param(e, f, id=n) for n, e, f in BAD_ENTRIES])
def test_bad_bundle_entries_stay_their_own_4xx_in_a_batch(
    caller: Caller, engine: Engine, patient_ref: str, entry: Any, field: str
) -> None:
    if isinstance(entry, dict) and entry.get("resource") == {}:
        entry = {**entry, "resource": observation(patient_ref)}
    good = _post_entry(observation(patient_ref, identifier=[{"system": "s", "value": "good"}]))
    before = stored_rows(engine, caller)
    response = caller.post("/fhir", json=_bundle("batch", entry, good))
    assert response.status_code == 200, response.text
    first, second = (e["response"] for e in response.json()["entry"])
    assert first["status"] in ("400", "422"), first
    named = [e for i in first["outcome"]["issue"] for e in i.get("expression", [])]
    assert any(e.startswith(field) for e in named), named
    assert second["status"].startswith("201"), second
    after = stored_rows(engine, caller)
    assert after[0] == before[0] + 2  # the good Observation and its Provenance

    before = after
    response = caller.post("/fhir", json=_bundle("transaction", entry, good))
    assert_refused(response, field)
    assert stored_rows(engine, caller) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"resourceType": "Bundle", "type": "batch", "entry": {}}, "Bundle.entry"),
        pytest.param({"resourceType": "Bundle", "type": "batch", "entry": "x"}, "Bundle.entry"),
        pytest.param({"resourceType": "Bundle", "type": 3, "entry": []}, "Bundle.type"),
        pytest.param({"resourceType": "Bundle", "type": ["batch"]}, "Bundle.type"),
        pytest.param({"resourceType": ["Bundle"], "type": "batch"}, "resourceType"),
        pytest.param([], "resourceType"),
        pytest.param("Bundle", "resourceType"),
    ],
)
def test_bundles_of_the_wrong_shape_are_refused(
    caller: Caller, engine: Engine, body: Any, field: str
) -> None:
    before = stored_rows(engine, caller)
    assert_refused(caller.post("/fhir", json=body), field)
    assert stored_rows(engine, caller) == before


def test_deep_nesting_inside_a_transaction_entry_is_refused(
    caller: Caller, engine: Engine, patient_ref: str
) -> None:
    deep = '{"a": [' * 900 + '"leaf"' + "]}" * 900  # deeper than any JSON encoder writes
    entry = orjson.dumps(_post_entry(observation(patient_ref, extension=["DEEP"])))
    entry = entry.replace(b'"DEEP"', deep.encode())
    before = stored_rows(engine, caller)
    for kind in ("transaction", "batch"):
        body = b'{"resourceType": "Bundle", "type": "%s", "entry": [%s]}' % (kind.encode(), entry)
        response = caller.post(
            "/fhir", content=body, headers={"Content-Type": "application/fhir+json"}
        )
        assert 400 <= response.status_code < 500, response.text[:300]
        assert expressions(response.json())
    assert stored_rows(engine, caller) == before


def test_bundles_over_the_entry_cap_are_refused(
    caller: Caller, engine: Engine, patient_ref: str
) -> None:
    entry = _post_entry({"resourceType": "Observation"})
    before = stored_rows(engine, caller)
    response = caller.post("/fhir", json=_bundle("batch", *[entry] * 1001))
    assert_refused(response, "Bundle.entry", (413,))
    assert stored_rows(engine, caller) == before


def test_circular_urn_uuid_references_in_a_transaction_are_refused(
    caller: Caller, engine: Engine, patient_ref: str
) -> None:
    a, b = (
        "urn:uuid:0a0a0a0a-0000-4000-8000-00000000000a",
        "urn:uuid:0b0b0b0b-0000-4000-8000-00000000000b",
    )
    first = observation(patient_ref, derivedFrom=[{"reference": b}], identifier=[])
    second = observation(patient_ref, derivedFrom=[{"reference": a}], identifier=[])
    before = stored_rows(engine, caller)
    bundle = _bundle("transaction", _post_entry(first, fullUrl=a), _post_entry(second, fullUrl=b))
    response = caller.post("/fhir", json=bundle)
    assert_refused(response, "Bundle.entry")
    selfish = observation(patient_ref, derivedFrom=[{"reference": a}], identifier=[])
    response = caller.post("/fhir", json=_bundle("transaction", _post_entry(selfish, fullUrl=a)))
    assert_refused(response, "Bundle.entry")
    assert stored_rows(engine, caller) == before


def test_transaction_entries_are_created_after_the_entries_they_reference(
    caller: Caller, patient_ref: str
) -> None:
    a, b = (
        "urn:uuid:1a1a1a1a-0000-4000-8000-00000000001a",
        "urn:uuid:1b1b1b1b-0000-4000-8000-00000000001b",
    )
    derived = observation(patient_ref, derivedFrom=[{"reference": b}], identifier=[])
    base = observation(patient_ref, identifier=[])
    bundle = _bundle("transaction", _post_entry(derived, fullUrl=a), _post_entry(base, fullUrl=b))
    response = caller.post("/fhir", json=bundle)
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    stored = caller.get(locations[0].split("/_history")[0].removeprefix("http://testserver")).json()
    assert locations[1].split("/fhir/")[1].startswith(stored["derivedFrom"][0]["reference"])


@pytest.fixture
def alert_task(caller: Caller, engine: Engine, settings: Any) -> dict[str, Any]:
    """The FHIR Task of an open alert (PHQ-9 item 9 answered)."""
    response = caller.post("/v1/symptom-reports", json=phq9("t-1", [0] * 8 + [1]))
    assert response.status_code == 201
    run_pending(engine, settings)
    [alert] = caller.get("/v1/alerts").json()["alerts"]
    task: dict[str, Any] = caller.get(f"/fhir/{alert['task']}").json()
    return task


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(
            {"owner": {"reference": "Practitioner/" + LONG}}, "owner.reference", id="owner"
        ),
        pytest.param({"owner": {"reference": NUL}}, "owner.reference", id="nul-owner"),
        pytest.param(
            {"status": "completed", "note": [{"text": NUL}]}, "note[0].text", id="nul-note"
        ),
        pytest.param({"status": "completed", "note": "x"}, "note", id="note-string"),
    ],
)
def test_hostile_task_updates_are_refused(
    caller: Caller, engine: Engine, alert_task: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    before = stored_rows(engine, caller)
    body = {**alert_task, "status": "accepted", **change}
    response = caller.http.put(f"/fhir/Task/{alert_task['id']}", json=body, headers=caller.headers)
    assert_refused(response, f"Task.{field}")
    assert stored_rows(engine, caller) == before
    assert caller.get(f"/fhir/Task/{alert_task['id']}").json()["status"] == alert_task["status"]
