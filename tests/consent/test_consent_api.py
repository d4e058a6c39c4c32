"""``/v1/consents``: record, retry, supersede, revoke and read back; the FHIR API's Consents."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import Caller, make_caller
from support.consent_world import APP_SYSTEM
from support.consents import deny_all_consent

from careloop.fhir.validation import check_resource
from careloop.services.audit.models import AuditRecord

PATIENT = {"system": APP_SYSTEM, "value": "api-1"}


def _post(caller: Caller, body: Any, **headers: str) -> Any:
    return caller.post("/v1/consents", json=body, headers=headers)


def _in_force(caller: Caller, value: str = "api-1") -> dict[str, Any]:
    response = caller.get(
        "/v1/consents", params={"patient.system": APP_SYSTEM, "patient.value": value}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_decision_becomes_an_active_fhir_consent(app_caller: Caller) -> None:
    body = {
        "patient": PATIENT,
        "decision": "permit",
        "purpose": "research-export",
        "period": {"start": "2026-01-01T00:00:00Z", "end": "2036-01-01T00:00:00Z"},
    }
    response = _post(app_caller, body)
    assert response.status_code == 201, response.text
    consent = response.json()
    check_resource(consent)  # valid FHIR R4
    assert response.headers["location"].endswith(f"/fhir/Consent/{consent['id']}")
    assert consent["resourceType"] == "Consent" and consent["status"] == "active"
    assert consent["scope"]["coding"][0]["code"] == "patient-privacy"
    assert consent["category"][0]["coding"][0]["code"] == "59284-0"
    assert consent["policyRule"]["coding"][0]["code"] == "OPTIN"
    assert consent["provision"]["type"] == "permit"
    assert consent["provision"]["period"] == {
        "start": "2026-01-01T00:00:00Z",
        "end": "2036-01-01T00:00:00Z",
    }
    [purpose] = consent["provision"]["purpose"]
    assert (purpose["system"], purpose["code"]) == (
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "HRESCH",
    )
    stored = app_caller.get(f"/fhir/Consent/{consent['id']}")
    assert stored.status_code == 200 and stored.json()["patient"] == consent["patient"]
    assert _in_force(app_caller)["purposes"]["research-export"] == {
        "decision": "permit",
        "source": "consent",
        "consent": consent["id"],
    }


def test_an_unknown_patient_reads_the_tenant_policy(app_caller: Caller) -> None:
    answer = _in_force(app_caller, "nobody")
    assert answer["patient"] is None and answer["consents"] == []
    assert {p: d["decision"] for p, d in answer["purposes"].items()} == {
        "care-team-alerts": "permit",
        "ehr-sync": "deny",
        "research-export": "deny",
    }
    assert {d["source"] for d in answer["purposes"].values()} == {"tenant-policy"}


def test_a_retry_never_records_twice(app_caller: Caller) -> None:
    body = {"patient": PATIENT, "decision": "deny", "purpose": "ehr-sync", "app_consent_id": "c1"}
    first = _post(app_caller, body)
    again = _post(app_caller, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    [identifier] = first.json()["identifier"]
    assert identifier["value"].endswith("|c1")
    other = _post(app_caller, {**body, "decision": "permit"})
    assert other.status_code == 409 and "app_consent_id" in other.text
    without_id = {k: v for k, v in body.items() if k != "app_consent_id"}
    assert _post(app_caller, without_id).json()["id"] == first.json()["id"]  # already in force
    keyed = _post(
        app_caller, {**without_id, "purpose": "research-export"}, **{"Idempotency-Key": "k"}
    )
    replay = _post(
        app_caller, {**without_id, "purpose": "research-export"}, **{"Idempotency-Key": "k"}
    )
    assert keyed.json()["id"] == replay.json()["id"]
    assert len(_in_force(app_caller)["consents"]) == 2


def test_a_new_decision_supersedes_the_earlier_one_for_its_purpose(app_caller: Caller) -> None:
    deny = _post(app_caller, {"patient": PATIENT, "decision": "deny", "purpose": "ehr-sync"})
    other = _post(
        app_caller, {"patient": PATIENT, "decision": "deny", "purpose": "research-export"}
    )
    permit = _post(app_caller, {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"})
    assert app_caller.get(f"/fhir/Consent/{deny.json()['id']}").json()["status"] == "inactive"
    answer = _in_force(app_caller)
    assert {c["id"] for c in answer["consents"]} == {other.json()["id"], permit.json()["id"]}
    assert answer["purposes"]["ehr-sync"]["decision"] == "permit"
    assert answer["purposes"]["research-export"]["consent"] == other.json()["id"]


def test_revocation_takes_effect_at_once_by_post_or_delete(app_caller: Caller) -> None:
    permit = _post(app_caller, {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"})
    consent_id = permit.json()["id"]
    revoked = app_caller.post(f"/v1/consents/{consent_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["status"] == "inactive"
    assert _in_force(app_caller)["purposes"]["ehr-sync"] == {
        "decision": "deny",
        "source": "tenant-policy",
        "consent": None,
    }
    deny = _post(
        app_caller, {"patient": PATIENT, "decision": "deny", "purpose": "care-team-alerts"}
    )
    path = f"/v1/consents/{deny.json()['id']}"
    deleted = app_caller.http.delete(path, headers=app_caller.headers)
    assert deleted.status_code == 200 and deleted.json()["status"] == "inactive"
    assert app_caller.http.delete(path, headers=app_caller.headers).status_code == 200  # stays
    assert _in_force(app_caller)["purposes"]["care-team-alerts"]["decision"] == "permit"
    assert app_caller.post("/v1/consents/no-such-consent/revoke").status_code == 404


def test_another_tenant_can_neither_see_nor_revoke(
    app_caller: Caller, strict_app: Any, engine: Any
) -> None:
    permit = _post(app_caller, {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"})
    stranger = make_caller(strict_app, engine)
    assert stranger.post(f"/v1/consents/{permit.json()['id']}/revoke").status_code == 404
    assert _in_force(stranger)["purposes"]["ehr-sync"]["source"] == "tenant-policy"


def test_a_consent_written_through_the_fhir_api_is_honoured_the_same(app_caller: Caller) -> None:
    _post(app_caller, {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"})
    patient = _in_force(app_caller)["patient"]
    later = {**deny_all_consent(patient), "dateTime": "2099-01-01T00:00:00Z"}
    written = app_caller.post(
        "/fhir/Consent", json=later, headers={"Content-Type": "application/fhir+json"}
    )
    assert written.status_code == 201, written.text
    answer = _in_force(app_caller)
    assert {d["consent"] for d in answer["purposes"].values()} == {written.json()["id"]}
    assert {d["decision"] for d in answer["purposes"].values()} == {"deny"}


def test_scopes_are_required(strict_app: Any, engine: Any) -> None:
    reader = make_caller(strict_app, engine, scope="system/Consent.r")
    body = {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"}
    assert _post(reader, body).status_code == 403
    assert reader.post("/v1/consents/x/revoke").status_code == 403
    assert _in_force(reader)["patient"] is None
    nobody = make_caller(strict_app, engine, scope="system/Observation.c")
    assert (
        nobody.get("/v1/consents", params={"patient.system": "s", "patient.value": "v"}).status_code
        == 403
    )


def _fields(response: Any) -> set[str]:
    return {e for i in response.json()["issue"] for e in i.get("expression", [])}


def test_invalid_bodies_are_422_naming_the_field(app_caller: Caller) -> None:
    good = {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"}
    cases = {
        "decision": {**good, "decision": "maybe"},
        "purpose": {**good, "purpose": "marketing"},
        "patient.value": {**good, "patient": {"system": APP_SYSTEM}},
        "period": {
            **good,
            "period": {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        },
        "period.start": {**good, "period": {"start": "yesterday"}},
        "extra": {**good, "extra": 1},
    }
    for field, body in cases.items():
        response = _post(app_caller, body)
        assert response.status_code == 422, (field, response.text)
        assert any(e.startswith(field) for e in _fields(response)), (field, response.text)
    missing = app_caller.get("/v1/consents")
    assert missing.status_code in (400, 422)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
_bodies = (
    st.fixed_dictionaries(
        {},
        optional={
            "patient": st.one_of(_json, st.fixed_dictionaries({"system": _json, "value": _json})),
            "decision": st.one_of(_json, st.sampled_from(["permit", "deny"])),
            "purpose": st.one_of(_json, st.sampled_from(["ehr-sync", "care-team-alerts"])),
            "period": st.one_of(
                _json, st.fixed_dictionaries({}, optional={"start": _json, "end": _json})
            ),
            "app_consent_id": _json,
        },
    )
    | _json
)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_bodies)
def test_hostile_bodies_never_cause_a_server_error(app_caller: Caller, body: Any) -> None:
    response = _post(app_caller, body)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["resourceType"] == "OperationOutcome"


def test_giving_and_revoking_consent_are_audited(app_caller: Caller, engine: Engine) -> None:
    body = {"patient": PATIENT, "decision": "permit", "purpose": "ehr-sync"}
    consent = _post(app_caller, body).json()
    assert _post(app_caller, body).status_code == 200  # a retry is not a second change
    for _ in range(2):  # revoking twice changes it once
        revoked = app_caller.post(f"/v1/consents/{consent['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
    with Session(engine) as session:
        entries = session.exec(
            select(AuditRecord)
            .where(AuditRecord.kind == "consent")
            .where(AuditRecord.agent == f"client:{app_caller.client_id}")
            .order_by(col(AuditRecord.seq))
        ).all()
    patient = consent["patient"]["reference"]
    assert [e.entity for e in entries] == [f"{patient} Consent/{consent['id']}"] * 2
    assert all(APP_SYSTEM not in e.entity and "api-1" not in e.entity for e in entries)
