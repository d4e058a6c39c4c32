"""careloop opened from the EHR in Chromium: an EHR launch, and a CDS card's SMART link.

The in-repo test EHR serves over loopback HTTP; its authorize endpoint approves at once, so the
browser goes careloop ``/launch`` -> EHR authorize -> careloop ``/launch/callback`` -> the page.
The CDS calls are signed by an EHR with real keys (``tests/cds/cds_ehr.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from cds.cds_ehr import SERVICE, SigningEhr, hook_request
from ehr_server import TestEHR
from fastapi.testclient import TestClient
from playwright.sync_api import Page, Request, expect
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.browser import Shoot
from support.clients import Caller, make_caller
from support.ehr import connect_ehr
from support.live_server import LiveServer
from support.reports import phq9

from careloop.services.alerts.models import Alert
from careloop.services.cds.jwks import CACHE
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

APP_SYSTEM = "https://app.example/patients"
APP_SCOPES = "launch launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs"
SECRET = "launch-secret-for-browser-tests"
EHR_USER_NAME = "Dr Synthetic EHR"  # the ``name`` claim of the test EHR's id_tokens


@pytest.fixture(scope="module")
def api(server: LiveServer, engine: Engine) -> Iterator[TestClient]:
    """careloop's API (same database as the served one) for setting up data."""
    with TestClient(create_app(server.settings, engine), base_url=server.origin) as client:
        yield client


@dataclass(frozen=True)
class Hospital:
    """A tenant connected to the test EHR, with a linked patient who has an open critical alert."""

    ehr: TestEHR
    caller: Caller
    patient_id: str
    chart: dict[str, Any]
    alert_id: str


@pytest.fixture
def hospital(api: TestClient, server: LiveServer, engine: Engine) -> Iterator[Hospital]:
    """The test EHR on loopback, registered for App Launch of the served careloop."""
    with TestEHR() as ehr:
        caller = make_caller(api, engine)
        client_id = f"app-{caller.tenant}"
        ehr.register_app(client_id, [f"{server.origin}/launch/callback"], APP_SCOPES, SECRET)
        connect_ehr(
            api,
            engine,
            server.settings,
            caller,
            ehr,
            launch_client_id=client_id,
            launch_client_secret=SECRET,
            secret_key=server.settings.secret_key,
        )
        value = f"launch-{uuid.uuid4().hex[:8]}"
        chart = ehr.seed(
            {
                "resourceType": "Patient",
                "active": True,
                "identifier": [{"system": APP_SYSTEM, "value": value}],
            }
        )
        created = caller.post("/v1/symptom-reports", json=phq9(value, [0] * 8 + [2]))
        assert created.status_code == 201, created.text
        run_pending(engine, server.settings)  # the reading goes to the EHR: the patient is linked
        patient_id = created.json()["patient"].removeprefix("Patient/")
        with Session(engine) as session:
            [alert] = session.exec(select(Alert).where(Alert.patient_id == patient_id)).all()
        assert alert.severity == "critical"
        yield Hospital(ehr, caller, patient_id, chart, alert.id)


def _visited(page: Page) -> list[str]:
    """Every URL the page's frames request, in order (redirect hops included)."""
    urls: list[str] = []

    def seen(request: Request) -> None:
        if request.is_navigation_request():
            urls.append(request.url)

    page.on("request", seen)
    return urls


def _through_the_ehr(urls: list[str], ehr: TestEHR, origin: str) -> None:
    """The navigation went careloop /launch -> EHR authorize -> careloop callback, in order."""
    authorize = next(i for i, u in enumerate(urls) if u.startswith(ehr.authorize_url + "?"))
    callback = next(i for i, u in enumerate(urls) if u.startswith(f"{origin}/launch/callback?"))
    assert urls[0].startswith(f"{origin}/launch?") and 0 < authorize < callback


def test_an_ehr_launch_lands_on_the_patient_signed_in_as_the_ehr_user(
    page: Page, server: LiveServer, hospital: Hospital, shoot: Shoot
) -> None:
    ehr = hospital.ehr
    launch = ehr.create_launch(str(hospital.chart["id"]), user="Practitioner/dr-browser")
    urls = _visited(page)
    page.goto(f"/launch?iss={quote(ehr.base_url, safe='')}&launch={launch}")
    expect(page).to_have_url(f"{server.origin}/patients/{hospital.patient_id}")
    _through_the_ehr(urls, ehr, server.origin)
    expect(page.get_by_test_id("launch-context")).to_have_text(
        "Opened from the EHR for this patient."
    )
    expect(page.locator(".who")).to_have_text(EHR_USER_NAME)
    expect(page.get_by_test_id("patient-label")).to_have_text(re.compile(r"\S"))
    expect(page.get_by_test_id("chart-phq9")).to_be_visible()
    open_alert = page.get_by_test_id("open-alert-link")
    expect(open_alert).to_have_attribute("href", f"/alerts/{hospital.alert_id}")
    shoot("launched-patient")


def _critical_card(server: LiveServer, hospital: Hospital, signing: SigningEhr) -> dict[str, Any]:
    """The patient-view card of the launched patient, from a signed call over HTTP."""
    url = server.origin + SERVICE
    chart_id = str(hospital.chart["id"])
    response = httpx.post(
        url,
        json=hook_request(chart_id, hospital.chart),
        headers=signing.headers(SERVICE, aud=url),
        timeout=10,
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    [card] = response.json()["cards"]
    assert card["indicator"] == "critical" and card["uuid"] == hospital.alert_id
    return dict(card)


def test_a_cds_card_opens_its_alert_and_the_clinician_acknowledges_with_a_note(
    page: Page, server: LiveServer, engine: Engine, hospital: Hospital, shoot: Shoot
) -> None:
    """Card -> SMART link with appContext -> the alert page -> acknowledged; then the card's
    override in the EHR shows in the alert's history."""
    signing = SigningEhr()
    try:
        with signing.server.running():
            signing.register(engine, server.settings, hospital.caller.tenant, ehr_name="hospital")
            card = _critical_card(server, hospital, signing)
            _acknowledge_from_the_card(page, server, hospital, card, shoot)
            _override_the_card(page, server, hospital, signing, card, shoot)
    finally:
        CACHE.clear()


def _acknowledge_from_the_card(
    page: Page, server: LiveServer, hospital: Hospital, card: dict[str, Any], shoot: Shoot
) -> None:
    """The EHR launches the card's SMART link; the clinician acknowledges on the alert page."""
    [link] = [link for link in card["links"] if link["type"] == "smart"]
    assert link["url"] == f"{server.origin}/launch"
    context = orjson.loads(link["appContext"])
    assert context == {"patient": hospital.patient_id, "alert": hospital.alert_id}

    # The EHR launches the card's app with the card's appContext (CDS Hooks 2.0, SMART link).
    ehr = hospital.ehr
    launch = ehr.create_launch(
        str(hospital.chart["id"]), user="Practitioner/dr-card", app_context=link["appContext"]
    )
    urls = _visited(page)
    page.goto(f"{link['url']}?iss={quote(ehr.base_url, safe='')}&launch={launch}")
    expect(page).to_have_url(f"{server.origin}/alerts/{hospital.alert_id}")
    _through_the_ehr(urls, ehr, server.origin)
    expect(page.get_by_test_id("alert-title")).to_contain_text("item 9")
    expect(page.get_by_test_id("severity").first).to_have_text("Critical")
    expect(page.get_by_test_id("alert-status")).to_have_text("Open")
    expect(page.locator(".who")).to_have_text(EHR_USER_NAME)
    shoot("alert-from-card")

    note = "Seen in clinic from the EHR card; C-SSRS done, low risk. Safety plan given."
    page.get_by_test_id("ack-note").fill(note)
    page.get_by_test_id("ack-submit").click()
    expect(page).to_have_url(re.compile(rf"/alerts/{hospital.alert_id}\?done=acknowledged$"))
    expect(page.get_by_test_id("alert-status")).to_have_text("Acknowledged")
    entry = page.locator('[data-testid="history-entry"][data-kind="acknowledged"]')
    expect(entry.get_by_test_id("history-note")).to_have_text(note)
    expect(entry.get_by_test_id("history-actor")).to_have_text(EHR_USER_NAME)
    shoot("acknowledged-from-card")

    alert = hospital.caller.get(f"/v1/alerts/{hospital.alert_id}")
    assert alert.status_code == 200, alert.text
    body = alert.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledgement_note"] == note
    assert body["acknowledged_by"] == "Practitioner/dr-card"


def _override_the_card(
    page: Page,
    server: LiveServer,
    hospital: Hospital,
    signing: SigningEhr,
    card: dict[str, Any],
    shoot: Shoot,
) -> None:
    """The clinician dismisses the card in the EHR with a reason: the alert's history says so."""
    reason = next(r for r in card["overrideReasons"] if r["code"] == "already-addressed")
    url = f"{server.origin}{SERVICE}/feedback"
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": reason, "userComment": "Discussed at the visit today"},
        "outcomeTimestamp": "2026-12-01T14:12:20Z",
    }
    sent = httpx.post(
        url,
        json={"feedback": [item]},
        headers=signing.headers(f"{SERVICE}/feedback", aud=url),
        timeout=10,
        trust_env=False,
    )
    assert sent.status_code == 200 and sent.json()["recorded"] == 1, sent.text
    page.reload()
    entry = page.locator('[data-testid="history-entry"][data-kind="card.overridden"]')
    expect(entry.get_by_test_id("history-kind")).to_have_text("Card overridden in the EHR")
    expect(entry.get_by_test_id("history-actor")).to_have_text("hospital (CDS)")
    expect(entry.get_by_test_id("history-details")).to_contain_text(reason["display"])
    expect(entry.get_by_test_id("history-note")).to_have_text("Discussed at the visit today")
    shoot("card-overridden-in-history")
