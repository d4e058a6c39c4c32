"""EHR traffic passes the egress gate: the identifier search checks consent and is audited."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from ehr_server import TestEHR
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import select
from support.clients import BASE_URL, Caller, make_caller
from support.consents import deny_all_consent
from support.ehr import connect_ehr
from support.reports import phq9

from careloop.services.audit.models import AuditRecord
from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

APP_SYSTEM = "https://app.example/patients"
SCOPES = "system/*.cruds"


@dataclass
class World:
    caller: Caller
    ehr: TestEHR
    engine: Engine
    settings: Settings

    def audits(self) -> list[AuditRecord]:
        with session_scope(self.engine) as session:
            tenant = session.exec(select(Tenant).where(Tenant.name == self.caller.tenant)).one()
            return list(
                session.exec(
                    select(AuditRecord)
                    .where(AuditRecord.tenant_id == tenant.id, AuditRecord.kind == "egress")
                    .order_by(AuditRecord.id)  # type: ignore[arg-type]
                ).all()
            )


@pytest.fixture
def world(settings: Settings, engine: Engine) -> Iterator[World]:
    fast = settings.model_copy(update={"ehr_timeout_seconds": 2.0, "ehr_circuit_failures": 100})
    with TestEHR() as ehr, TestClient(create_app(fast, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        connect_ehr(api, engine, fast, caller, ehr, SCOPES)
        yield World(caller, ehr, engine, fast)


def _patient_searches(ehr: TestEHR) -> list[tuple[str, str, int]]:
    return [r for r in ehr.requests if r[0] == "GET" and r[1].endswith("/Patient")]


def test_a_consent_denial_stops_the_identifier_search_and_is_audited(world: World) -> None:
    world.ehr.seed(
        {"resourceType": "Patient", "identifier": [{"system": APP_SYSTEM, "value": "c"}]}
    )
    report = world.caller.post("/v1/symptom-reports", json=phq9("c"))
    assert report.status_code == 201, report.text
    patient = report.json()["patient"]
    consent = world.caller.post(
        "/fhir/Consent",
        json=deny_all_consent(patient),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert consent.status_code == 201, consent.text

    run_pending(world.engine, world.settings)

    assert _patient_searches(world.ehr) == []  # the patient's identifier never left careloop
    assert world.ehr.resources("Observation") == []
    blocked = [a for a in world.audits() if a.outcome == "blocked"]
    assert blocked and all(a.entity.startswith(patient) for a in blocked)
    assert all(a.destination.startswith("ehr:127.0.0.1:") for a in blocked)


def test_the_identifier_search_and_the_write_are_audited(world: World) -> None:
    world.ehr.seed(
        {"resourceType": "Patient", "identifier": [{"system": APP_SYSTEM, "value": "a"}]}
    )
    report = world.caller.post("/v1/symptom-reports", json=phq9("a"))
    patient = report.json()["patient"]

    run_pending(world.engine, world.settings)

    assert len(_patient_searches(world.ehr)) == 1
    assert len(world.ehr.resources("Observation")) == 1
    audits = world.audits()
    assert {a.outcome for a in audits} == {"success"}
    search, *writes = audits  # the search, the report's resources, the alert's Task
    assert search.entity == patient  # ids only: the identifier itself is never recorded
    assert all(w.entity.startswith(patient + " ") for w in writes)
    assert any("Observation/" in w.entity for w in writes)
    assert {a.destination for a in audits} == {
        f"ehr:127.0.0.1:{world.ehr.base_url.split(':')[2].split('/')[0]}"
    }
