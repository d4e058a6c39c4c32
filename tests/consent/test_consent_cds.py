"""CDS Hooks cards carry careloop's alerts into the EHR: only under care-team-alerts consent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cds.cds_ehr import SERVICE, SigningEhr, hook_request
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select
from support.clients import Caller
from support.consent_world import APP_SYSTEM
from support.reports import phq9

from careloop.services.audit.models import AuditRecord
from careloop.services.cds.jwks import CACHE
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending

ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 1]


@pytest.fixture
def ehr(engine: Engine, strict_settings: Settings, app_caller: Caller) -> Iterator[SigningEhr]:
    signing = SigningEhr()
    with signing.server.running():
        signing.register(engine, strict_settings, app_caller.tenant)
        yield signing
    CACHE.clear()


def _cards(app: TestClient, ehr: SigningEhr, value: str) -> list[dict[str, Any]]:
    patient = {
        "resourceType": "Patient",
        "id": f"ehr-{value}",
        "identifier": [{"system": APP_SYSTEM, "value": value}],
    }
    response = app.post(
        SERVICE, json=hook_request(f"ehr-{value}", patient), headers=ehr.headers(SERVICE)
    )
    assert response.status_code == 200, response.text
    cards: list[dict[str, Any]] = response.json()["cards"]
    return cards


def test_a_care_team_alerts_deny_leaves_the_ehr_without_cards(
    strict_app: TestClient,
    strict_settings: Settings,
    engine: Engine,
    app_caller: Caller,
    ehr: SigningEhr,
) -> None:
    for value in ("cds-1", "cds-2"):
        response = app_caller.post("/v1/symptom-reports", json=phq9(value, ITEM9))
        assert response.status_code == 201, response.text
    run_pending(engine, strict_settings)
    assert _cards(strict_app, ehr, "cds-1")  # by default care-team alerts are on

    body = {
        "patient": {"system": APP_SYSTEM, "value": "cds-2"},
        "decision": "deny",
        "purpose": "care-team-alerts",
    }
    consent = app_caller.post("/v1/consents", json=body)
    assert consent.status_code == 201, consent.text
    assert _cards(strict_app, ehr, "cds-2") == []
    with session_scope(engine) as session:
        blocked = [
            a
            for a in session.exec(select(AuditRecord).where(AuditRecord.outcome == "blocked"))
            if a.destination == f"cds:{ehr.iss.split('/')[2]}"
        ]
    assert len(blocked) == 1 and blocked[0].purpose == "care-team-alerts"

    revoked = app_caller.post(f"/v1/consents/{consent.json()['id']}/revoke")
    assert revoked.status_code == 200
    assert _cards(strict_app, ehr, "cds-2")  # revoking the deny brings them back at once
