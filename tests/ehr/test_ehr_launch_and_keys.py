"""Clinicians launch careloop from the EHR (SMART App Launch), and careloop rotates its keys."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
import uvicorn
from ehr_server import TestEHR
from ehr_server.authorization import ID_TOKEN_FAULTS
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import col, select
from support.clients import BASE_URL, make_caller
from support.ehr import connect_ehr
from support.reports import phq9

from careloop.integrations.ehr.smart import tokens
from careloop.services.alerts.models import Alert
from careloop.services.clinicians.models import Clinician
from careloop.services.common.egress import destination_policy
from careloop.services.ehr.service import add_connection
from careloop.services.keys.service import rotate
from careloop.services.launch.models import ClinicianSession, LaunchState
from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

APP_SYSTEM = "https://app.example/patients"
APP_SCOPES = "launch launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs"
SECRET = "launch-secret-for-tests"


@pytest.fixture
def launched(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, TestEHR, str, str]]:
    """A linked patient with an open alert, and the EHR registered for App Launch.

    Yields (careloop client, EHR, careloop patient id, EHR patient id).
    """
    with TestEHR() as ehr, TestClient(create_app(settings, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        ehr.register_app(
            f"app-{caller.tenant}", [f"{BASE_URL}/launch/callback"], APP_SCOPES, SECRET
        )
        connect_ehr(
            api,
            engine,
            settings,
            caller,
            ehr,
            launch_client_id=f"app-{caller.tenant}",
            launch_client_secret=SECRET,
            secret_key=settings.secret_key,
        )
        chart = ehr.seed(
            {
                "resourceType": "Patient",
                "active": True,
                "identifier": [{"system": APP_SYSTEM, "value": "launch-1"}],
            }
        )
        created = caller.post(
            "/v1/symptom-reports", json=phq9("launch-1", [0, 0, 0, 0, 0, 0, 0, 0, 1])
        ).json()
        run_pending(engine, settings)
        yield api, ehr, created["patient"].removeprefix("Patient/"), str(chart["id"])


def _follow_launch(api: TestClient, start: str) -> httpx.Response:
    """Play the browser: careloop -> EHR authorize -> careloop callback."""
    first = api.get(start, follow_redirects=False)
    assert first.status_code == 302, first.text
    authorize = first.headers["location"]
    params = parse_qs(urlsplit(authorize).query)
    assert params["code_challenge_method"] == ["S256"]
    assert len(params["state"][0]) >= 32 and params["response_type"] == ["code"]
    at_ehr = httpx.get(authorize, follow_redirects=False)
    assert at_ehr.status_code == 302, at_ehr.text
    back = urlsplit(at_ehr.headers["location"])
    assert parse_qs(back.query)["state"] == params["state"]
    return api.get(f"{back.path}?{back.query}", follow_redirects=False)


def test_ehr_launch_lands_on_the_patient_with_context(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine
) -> None:
    api, ehr, patient_id, chart_id = launched
    launch = ehr.create_launch(chart_id, encounter_id="enc-7", user="Practitioner/dr-9")
    callback = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert callback.status_code == 302
    assert callback.headers["location"] == f"/patients/{patient_id}"
    cookie = callback.headers["set-cookie"].lower()
    assert cookie.startswith("careloop_session=") and "httponly" in cookie
    assert "samesite=lax" in cookie  # plain http: https makes it SameSite=None; Partitioned
    with session_scope(engine) as session:
        row = session.get(ClinicianSession, api.cookies["careloop_session"])
        assert row is not None and row.encounter_id == "enc-7" and row.patient_id == patient_id
        clinician = session.get(Clinician, row.clinician_id)
        assert clinician is not None and clinician.tenant_id == row.tenant_id
    assert clinician.fhir_user == f"{ehr.base_url}/Practitioner/dr-9"
    assert clinician.practitioner == "Practitioner/dr-9"
    assert clinician.name == "Dr Synthetic EHR" and clinician.email is None
    moved = api.get(f"/app/patients/{patient_id}", follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == f"/patients/{patient_id}"
    with TestClient(api.app, base_url=BASE_URL) as stranger:
        unlinked = stranger.get("/app/unlinked", follow_redirects=False)
        assert unlinked.status_code == 303
        assert unlinked.headers["location"].startswith("/login")


def test_the_same_ehr_user_is_the_same_clinician(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine
) -> None:
    api, ehr, _, chart_id = launched
    ids = set()
    for _ in range(2):
        launch = ehr.create_launch(chart_id, user="Practitioner/dr-same")
        _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
        with session_scope(engine) as session:
            row = session.get(ClinicianSession, api.cookies["careloop_session"])
            assert row is not None
            ids.add(row.clinician_id)
    assert len(ids) == 1


def test_the_authorize_request_carries_a_nonce_kept_with_the_state(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine
) -> None:
    api, ehr, _, chart_id = launched
    first = api.get(
        f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}", follow_redirects=False
    )
    params = parse_qs(urlsplit(first.headers["location"]).query)
    assert len(params["nonce"][0]) >= 32
    with session_scope(engine) as session:
        pending = session.get(LaunchState, params["state"][0])
        assert pending is not None and pending.nonce == params["nonce"][0]


@pytest.mark.parametrize("fault", ID_TOKEN_FAULTS)
def test_an_id_token_that_is_not_valid_refuses_the_launch(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine, fault: str
) -> None:
    api, ehr, _, chart_id = launched
    user = f"Practitioner/dr-{fault}"
    ehr.spoil_id_tokens(fault)
    launch = ehr.create_launch(chart_id, user=user)
    refused = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert refused.status_code == 400, refused.text
    assert "id_token" in refused.text and "careloop could not open" in refused.text
    assert "careloop_session" not in refused.headers.get("set-cookie", "")
    with session_scope(engine) as session:
        who = f"{ehr.base_url}/{user}"
        assert session.exec(select(Clinician).where(Clinician.fhir_user == who)).first() is None
    ehr.spoil_id_tokens(None)  # the next launch, with a valid id_token, signs in
    launch = ehr.create_launch(chart_id, user=user)
    assert _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}").status_code == 302


def test_standalone_launch_uses_the_patient_picked_in_the_ehr(
    launched: tuple[TestClient, TestEHR, str, str],
) -> None:
    api, ehr, patient_id, chart_id = launched
    ehr.set_standalone_patient(chart_id)
    callback = _follow_launch(api, f"/launch/standalone?iss={ehr.base_url}")
    assert callback.headers["location"] == f"/patients/{patient_id}"


def test_state_is_checked_and_single_use(launched: tuple[TestClient, TestEHR, str, str]) -> None:
    api, ehr, _, chart_id = launched
    launch = ehr.create_launch(chart_id)
    first = api.get(f"/launch?iss={ehr.base_url}&launch={launch}", follow_redirects=False)
    at_ehr = httpx.get(first.headers["location"], follow_redirects=False)
    back = urlsplit(at_ehr.headers["location"])
    forged = back.query.replace("state=", "state=x")
    assert api.get(f"{back.path}?{forged}", follow_redirects=False).status_code == 400
    assert api.get(f"{back.path}?{back.query}", follow_redirects=False).status_code == 302
    assert api.get(f"{back.path}?{back.query}", follow_redirects=False).status_code == 400


def _to_callback(api: TestClient, start: str) -> str:
    """Start a launch in ``api``'s browser and return the callback URL the EHR sends back."""
    first = api.get(start, follow_redirects=False)
    assert first.status_code == 302, first.text
    at_ehr = httpx.get(first.headers["location"], follow_redirects=False)
    back = urlsplit(at_ehr.headers["location"])
    return f"{back.path}?{back.query}"


def test_launch_cookie_is_httponly_lax_and_lasts_as_long_as_the_state(
    launched: tuple[TestClient, TestEHR, str, str],
) -> None:
    api, ehr, _, chart_id = launched
    first = api.get(
        f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}", follow_redirects=False
    )
    cookie = first.headers["set-cookie"].lower()
    assert cookie.startswith("careloop_launch=")
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=600" in cookie
    assert "secure" not in cookie  # http base URL; https adds Secure and the __Host- prefix


def test_over_https_the_launch_cookie_is_secure_and_host_only(
    launched: tuple[TestClient, TestEHR, str, str], settings: Settings, engine: Engine
) -> None:
    _, ehr, _, chart_id = launched
    https = settings.model_copy(update={"base_url": "https://testserver"})
    with TestClient(create_app(https, engine), base_url="https://testserver") as api:
        launch = ehr.create_launch(chart_id)
        first = api.get(f"/launch?iss={ehr.base_url}&launch={launch}", follow_redirects=False)
        assert first.status_code == 302, first.text
        cookie = first.headers["set-cookie"].lower()
        assert cookie.startswith("__host-careloop_launch=")
        assert "secure" in cookie and "path=/" in cookie and "domain" not in cookie


def test_over_https_the_launched_session_cookie_works_in_the_ehr_frame(
    launched: tuple[TestClient, TestEHR, str, str], settings: Settings, engine: Engine
) -> None:
    api, ehr, patient_id, chart_id = launched
    client_id = next(
        iter(parse_qs(urlsplit(_authorize_url(api, ehr, chart_id)).query)["client_id"])
    )
    callbacks = [f"{BASE_URL}/launch/callback", "https://testserver/launch/callback"]
    ehr.register_app(client_id, callbacks, APP_SCOPES, SECRET)
    https = settings.model_copy(update={"base_url": "https://testserver"})
    with TestClient(create_app(https, engine), base_url="https://testserver") as secure:
        launch = ehr.create_launch(chart_id)
        landed = _follow_launch(secure, f"/launch?iss={ehr.base_url}&launch={launch}")
        assert landed.status_code == 302, landed.text
        assert landed.headers["location"] == f"/patients/{patient_id}"
        cookie = next(c for c in landed.headers.get_list("set-cookie") if "careloop_session" in c)
        assert cookie.startswith("__Host-careloop_session=")
        parts = {p.strip().lower() for p in cookie.split(";")}
        assert {"httponly", "secure", "samesite=none", "partitioned", "path=/"} <= parts
        assert not any(p.startswith("domain") for p in parts)


def _authorize_url(api: TestClient, ehr: TestEHR, chart_id: str) -> str:
    start = f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}"
    return str(api.get(start, follow_redirects=False).headers["location"])


def test_a_stolen_state_cannot_sign_in_another_browser(
    launched: tuple[TestClient, TestEHR, str, str],
) -> None:
    api, ehr, patient_id, chart_id = launched
    callback = _to_callback(api, f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}")
    with TestClient(api.app, base_url=BASE_URL) as attacker:
        refused = attacker.get(callback, follow_redirects=False)
        assert refused.status_code == 403
        assert "another browser" in refused.text and "careloop_session" not in str(refused.headers)
        attacker.cookies.set("careloop_launch", "A" * 43)  # a cookie of its own
        assert attacker.get(callback, follow_redirects=False).status_code == 403
        attacker.cookies.clear()
        other = _to_callback(
            attacker, f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}"
        )
        assert attacker.cookies["careloop_launch"] != api.cookies["careloop_launch"]
        assert api.get(other, follow_redirects=False).status_code == 403  # and the other way
    landed = api.get(callback, follow_redirects=False)
    assert landed.status_code == 302
    assert landed.headers["location"] == f"/patients/{patient_id}"


def test_one_browser_can_run_launches_in_two_tabs(
    launched: tuple[TestClient, TestEHR, str, str],
) -> None:
    api, ehr, patient_id, chart_id = launched
    first = _to_callback(api, f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}")
    second = _to_callback(api, f"/launch?iss={ehr.base_url}&launch={ehr.create_launch(chart_id)}")
    for callback in (second, first):
        landed = api.get(callback, follow_redirects=False)
        assert landed.status_code == 302, landed.text
        assert landed.headers["location"] == f"/patients/{patient_id}"


def test_unknown_iss_is_refused(launched: tuple[TestClient, TestEHR, str, str]) -> None:
    api, _, _, _ = launched
    response = api.get("/launch?iss=https://evil.example/fhir&launch=x", follow_redirects=False)
    assert response.status_code == 400


@pytest.fixture
def live(settings: Settings, engine: Engine) -> Iterator[tuple[str, Settings]]:
    """careloop served over real HTTP (the EHR fetches its JWKS from it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    live_settings = settings.model_copy(update={"base_url": url})
    server = uvicorn.Server(
        uvicorn.Config(create_app(live_settings, engine), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield url, live_settings
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_key_rotation_keeps_tokens_flowing(live: tuple[str, Settings], engine: Engine) -> None:
    url, live_settings = live
    with TestEHR() as ehr, TestClient(create_app(live_settings, engine), base_url=url) as api:
        caller = make_caller(api, engine)
        client_id = f"careloop-{caller.tenant}"
        ehr.register_client(client_id, "system/*.cruds", jwks_url=f"{url}/.well-known/jwks.json")
        with session_scope(engine) as session:
            connection = add_connection(
                session,
                "hospital",
                ehr.base_url,
                client_id,
                "system/*.cruds",
                caller.tenant,
                destinations=destination_policy(live_settings),
            )
            connection_id = connection.id
        ehr.seed({"resourceType": "Patient", "identifier": [{"system": APP_SYSTEM, "value": "rk"}]})
        caller.post("/v1/symptom-reports", json=phq9("rk", effective="2026-11-01T09:00:00Z"))
        run_pending(engine, live_settings)
        old_kids = {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]}
        with session_scope(engine) as session:
            new_kids = {k.kid for k in rotate(session, live_settings.secret_key)}
        published = {k["kid"] for k in httpx.get(f"{url}/.well-known/jwks.json").json()["keys"]}
        assert old_kids | new_kids <= published  # the old keys stay during the roll-over
        tokens.invalidate(connection_id)  # the next token is signed with the new key
        caller.post("/v1/symptom-reports", json=phq9("rk", effective="2026-11-02T09:00:00Z"))
        run_pending(engine, live_settings)
        assert len(ehr.resources("Observation")) == 2
        assert ehr.issued_tokens == 2


def _alert_of(engine: Engine, patient_id: str) -> str:
    with session_scope(engine) as session:
        [alert] = session.exec(select(Alert).where(Alert.patient_id == patient_id)).all()
        return alert.id


def _app_context(patient_id: str, alert_id: str) -> str:
    return orjson.dumps({"patient": patient_id, "alert": alert_id}).decode()


def test_a_launch_from_a_cds_card_lands_on_its_alert(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine
) -> None:
    """The card's SMART link carries ``appContext``; the EHR returns it with the token."""
    api, ehr, patient_id, chart_id = launched
    alert_id = _alert_of(engine, patient_id)
    launch = ehr.create_launch(chart_id, app_context=_app_context(patient_id, alert_id))
    landed = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert landed.status_code == 302, landed.text
    assert landed.headers["location"] == f"/alerts/{alert_id}"
    page = api.get(landed.headers["location"])
    assert page.status_code == 200 and "Dr Synthetic EHR" in page.text


def test_without_a_launched_patient_an_alert_of_the_tenant_is_enough(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine
) -> None:
    api, ehr, patient_id, _ = launched
    alert_id = _alert_of(engine, patient_id)
    launch = ehr.create_launch(None, app_context=orjson.dumps({"alert": alert_id}).decode())
    landed = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert landed.headers["location"] == f"/alerts/{alert_id}"
    launch = ehr.create_launch(None, app_context='{"alert": "no-such-alert"}')
    landed = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert landed.headers["location"] == "/app/unlinked"


@pytest.mark.parametrize(
    "context",
    [
        "not json",
        "[]",
        '"a string"',
        '{"alert": 7}',
        '{"alert": "../inbox"}',
        '{"alert": "' + "a" * 65 + '"}',
        '{"patient": ["x"], "alert": "ALERT"}',
        '{"patient": "someone-else", "alert": "ALERT"}',
        '{"alert": "ALERT", "pad": "' + "x" * 2000 + '"}',
        '{"alert": "ALERT"\u0000}',
        "",
    ],
)
def test_an_app_context_not_understood_is_ignored(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine, context: str
) -> None:
    api, ehr, patient_id, chart_id = launched
    context = context.replace("ALERT", _alert_of(engine, patient_id))
    launch = ehr.create_launch(chart_id, app_context=context)
    landed = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert landed.status_code == 302, landed.text
    assert landed.headers["location"] == f"/patients/{patient_id}"


def _open_item9_alert(
    api: TestClient, engine: Engine, settings: Settings, tenant: str | None
) -> str:
    """An alert of a new patient of ``tenant`` (a new tenant when None)."""
    caller = make_caller(api, engine, tenant=tenant)
    value = f"other-{secrets.token_hex(4)}"
    created = caller.post("/v1/symptom-reports", json=phq9(value, [0] * 8 + [2])).json()
    run_pending(engine, settings)
    return _alert_of(engine, created["patient"].removeprefix("Patient/"))


def test_an_app_context_is_trusted_no_further_than_the_tenant_and_the_patient(
    launched: tuple[TestClient, TestEHR, str, str], engine: Engine, settings: Settings
) -> None:
    api, ehr, patient_id, chart_id = launched
    with session_scope(engine) as session:
        tenant = session.exec(
            select(Tenant.name)
            .join(Alert, col(Alert.tenant_id) == col(Tenant.id))
            .where(Alert.patient_id == patient_id)
        ).one()
    other_patient = _open_item9_alert(api, engine, settings, tenant)
    other_tenant = _open_item9_alert(api, engine, settings, None)
    for alert_id in (other_patient, other_tenant):
        launch = ehr.create_launch(chart_id, app_context=_app_context(patient_id, alert_id))
        landed = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
        assert landed.headers["location"] == f"/patients/{patient_id}"
    launch = ehr.create_launch(None, app_context=orjson.dumps({"alert": other_tenant}).decode())
    assert (
        _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}").headers["location"]
        == "/app/unlinked"
    )
    launch = ehr.create_launch(None, app_context=orjson.dumps({"alert": other_patient}).decode())
    landed = _follow_launch(api, f"/launch?iss={ehr.base_url}&launch={launch}")
    assert landed.headers["location"] == f"/alerts/{other_patient}"  # no patient: the tenant's
