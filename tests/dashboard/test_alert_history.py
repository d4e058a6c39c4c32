"""The alert's history on its page and on the patient page: CDS card outcomes, readable actors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cds.cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.clients import Caller, make_caller
from support.clinicians import SignedInBrowser, signed_in_browser
from support.reports import phq9

from careloop.services.cds.jwks import CACHE
from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.workflows.inline import run_pending

FEEDBACK = SERVICE + "/feedback"
COMMENT = "Synthetic override comment 5521"
SYSTEM = "https://app.example/patients"


def tenant_id(engine: Engine, caller: Caller) -> str:
    """The id of the caller's tenant (``caller.tenant`` is its name)."""
    with Session(engine) as session:
        return session.exec(select(Tenant.id).where(Tenant.name == caller.tenant)).one()


def cookie_header(browser: SignedInBrowser) -> dict[str, str]:
    """The request header carrying a signed-in browser's session cookie."""
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}


@dataclass(frozen=True)
class Carded:
    """A patient with an open critical alert, its card, and the EHR that showed it."""

    ehr: SigningEhr
    tenant: str
    patient_id: str
    card: dict[str, Any]


@pytest.fixture
def carded(
    app_client: TestClient, caller: Caller, engine: Engine, settings: Settings
) -> Iterator[Carded]:
    """The critical card of a patient with a positive item 9, from a signed CDS call."""
    signing = SigningEhr()
    with signing.server.running():
        signing.register(engine, settings, caller.tenant)
        value = f"hist-{uuid.uuid4().hex[:8]}"
        body = phq9(value, [0, 0, 0, 0, 0, 0, 0, 0, 2], "2026-11-10T09:00:00Z")
        created = caller.post("/v1/symptom-reports", json=body)
        assert created.status_code == 201, created.text
        run_pending(engine, settings)
        patient = {
            "resourceType": "Patient",
            "id": "ehr-h",
            "identifier": [{"system": SYSTEM, "value": value}],
        }
        response = app_client.post(
            SERVICE, json=hook_request("ehr-h", patient), headers=signing.headers(SERVICE)
        )
        assert response.status_code == 200, response.text
        [card] = response.json()["cards"]
        assert card["indicator"] == "critical"
        yield Carded(
            signing,
            tenant_id(engine, caller),
            created.json()["patient"].removeprefix("Patient/"),
            card,
        )
    CACHE.clear()


def _feedback(app_client: TestClient, ehr: SigningEhr, item: dict[str, Any]) -> None:
    response = app_client.post(FEEDBACK, json={"feedback": [item]}, headers=ehr.headers(FEEDBACK))
    assert response.status_code == 200, response.text
    assert response.json()["recorded"] == 1


def _override(app_client: TestClient, carded: Carded) -> None:
    reason = next(r for r in carded.card["overrideReasons"] if r["code"] == "already-addressed")
    _feedback(
        app_client,
        carded.ehr,
        {
            "card": carded.card["uuid"],
            "outcome": "overridden",
            "overrideReason": {"reason": reason, "userComment": COMMENT},
            "outcomeTimestamp": "2026-12-01T14:12:20Z",
        },
    )


def _accept_acknowledge(app_client: TestClient, carded: Carded) -> None:
    acknowledge = carded.card["suggestions"][0]
    assert acknowledge["label"] == "Acknowledge"
    _feedback(
        app_client,
        carded.ehr,
        {
            "card": carded.card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": acknowledge["uuid"]}],
            "outcomeTimestamp": "2026-12-01T14:13:00Z",
        },
    )


def _entries(html: str, kind: str) -> list[str]:
    """The ``<li>`` of each history entry of ``kind`` in ``html``."""
    found = []
    marker = f'data-testid="history-entry" data-kind="{kind}"'
    start = html.find(marker)
    while start != -1:
        found.append(html[start : html.index("</li>", start)])
        start = html.find(marker, start + 1)
    return found


def test_the_alert_page_shows_an_overridden_card_with_its_reason_and_comment(
    app_client: TestClient, engine: Engine, carded: Carded
) -> None:
    _override(app_client, carded)
    browser = signed_in_browser(engine, carded.tenant, "Practitioner/hist-1", name="Dr Hist")
    page = app_client.get(f"/alerts/{carded.card['uuid']}", headers=cookie_header(browser))
    assert page.status_code == 200, page.text
    [entry] = _entries(page.text, "card.overridden")
    assert "Card overridden in the EHR" in entry
    assert "reason: Already addressed with the patient" in entry
    assert f'data-testid="history-note">{COMMENT}</blockquote>' in entry
    assert 'data-testid="history-actor">EHR (CDS)</span>' in entry
    assert "cds:" not in entry and carded.ehr.iss not in entry
    assert "outcome_timestamp" not in entry and "{" not in entry  # no raw JSON


def test_an_accepted_acknowledge_names_the_suggestion_and_the_ehr(
    app_client: TestClient, engine: Engine, carded: Carded
) -> None:
    _accept_acknowledge(app_client, carded)
    browser = signed_in_browser(engine, carded.tenant, "Practitioner/hist-2", name="Dr Hist")
    page = app_client.get(f"/alerts/{carded.card['uuid']}", headers=cookie_header(browser))
    [accepted] = _entries(page.text, "card.accepted")
    assert "Card accepted in the EHR" in accepted and "suggestions taken: Acknowledge" in accepted
    assert 'data-testid="history-actor">EHR (CDS)</span>' in accepted
    [acknowledged] = _entries(page.text, "acknowledged")
    assert 'data-testid="history-actor">EHR (CDS)</span>' in acknowledged
    assert "<dt>Acknowledged by</dt><dd>EHR (CDS)</dd>" in page.text


def test_the_patient_page_history_shows_who_did_what(
    app_client: TestClient, engine: Engine, carded: Carded
) -> None:
    _override(app_client, carded)
    browser = signed_in_browser(engine, carded.tenant, "Practitioner/hist-3", name="Dr Readable")
    acknowledged = app_client.post(
        f"/alerts/{carded.card['uuid']}/acknowledge",
        data={"csrf_token": browser.csrf_token, "note": "Called back"},
        headers=cookie_header(browser),
        follow_redirects=False,
    )
    assert acknowledged.status_code == 303, acknowledged.text
    page = app_client.get(f"/patients/{carded.patient_id}", headers=cookie_header(browser))
    assert page.status_code == 200, page.text
    history = page.text[page.text.index('data-testid="alert-history"') :]
    [overridden] = _entries(history, "card.overridden")
    assert "reason: Already addressed with the patient" in overridden and COMMENT in overridden
    assert "EHR (CDS)" in overridden
    [ack] = _entries(history, "acknowledged")
    assert 'data-testid="history-actor">Dr Readable</span>' in ack and "Called back" in ack
    assert "Practitioner/hist-3" not in history  # named, not referenced
    assert "Dr Readable, " in history  # the Acknowledged column too
    [opened] = _entries(history, "opened")
    assert 'data-testid="history-actor">careloop</span>' in opened


def test_another_tenant_sees_none_of_it(
    app_client: TestClient, engine: Engine, carded: Carded
) -> None:
    _override(app_client, carded)
    other = make_caller(app_client, engine)
    stranger = signed_in_browser(engine, tenant_id(engine, other))
    page = app_client.get(f"/alerts/{carded.card['uuid']}", headers=cookie_header(stranger))
    assert page.status_code == 404 and COMMENT not in page.text
    patient = app_client.get(f"/patients/{carded.patient_id}", headers=cookie_header(stranger))
    assert patient.status_code == 404 and COMMENT not in patient.text


def test_the_rules_a_reading_crossed_read_as_words_not_json(
    app_client: TestClient, engine: Engine, carded: Carded
) -> None:
    browser = signed_in_browser(engine, carded.tenant)
    page = app_client.get(f"/alerts/{carded.card['uuid']}", headers=cookie_header(browser))
    [opened] = _entries(page.text, "opened")
    assert "rules: phq9-item9" in opened and "[" not in opened
