"""Linking to the EHR keeps the EHR's name and MRN of the patient, and the pages show it."""

from __future__ import annotations

from ehr_server import TestEHR
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.clients import BASE_URL, make_caller
from support.clinicians import signed_in_browser
from support.ehr import connect_ehr
from support.patient_data import (
    SYSTEM,
    cookie_header,
    phq9_answers,
    post_reports,
    report,
    tenant_id,
)

from careloop.services.ehr.models import PatientLink
from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def test_link_fills_the_ehr_label_shown_on_the_pages(settings: Settings, engine: Engine) -> None:
    with TestEHR() as ehr, TestClient(create_app(settings, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        connect_ehr(api, engine, settings, caller, ehr, "system/*.cruds")
        ehr.seed(
            {
                "resourceType": "Patient",
                "identifier": [
                    {"system": SYSTEM, "value": "lnk-1"},
                    {"type": MR, "system": "urn:hospital:mrn", "value": "MRN-555"},
                ],
                "name": [{"use": "official", "given": ["Robin"], "family": "Synthetic"}],
                "active": True,
            }
        )
        patient = post_reports(
            caller, [report("lnk-1", "phq-9", "2026-11-20T09:00:00Z", answers=phq9_answers(7))]
        )
        run_pending(engine, settings)
        with Session(engine) as session:
            link = session.exec(select(PatientLink).where(PatientLink.patient_id == patient)).one()
            assert link.ehr_label == "Robin Synthetic (MRN MRN-555)"
        browser = signed_in_browser(engine, tenant_id(engine, caller))
        page = api.get(f"/patients/{patient}", headers=cookie_header(browser))
        assert "Robin Synthetic (MRN MRN-555)" in page.text
        caseload = api.get("/caseload", headers=cookie_header(browser))
        assert "Robin Synthetic (MRN MRN-555)" in caseload.text
