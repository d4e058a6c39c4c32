"""Patient labels: the EHR's (when linked), the Patient's name, an app identifier, a fallback."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine
from support.clients import Caller
from support.patient_data import phq9_answers, post_reports, report, tenant_id

from careloop.services.ehr.models import EhrConnection, PatientLink
from careloop.services.ehr.vocabulary import LinkState
from careloop.services.patients.labels import ehr_label, patient_label, patient_labels
from careloop.services.unit_of_work import session_scope

MRN = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def test_ehr_label_prefers_the_official_name_and_adds_the_mrn() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {"use": "nickname", "text": "Sam"},
            {"use": "official", "given": ["Sam", "Q"], "family": "Synthetic"},
        ],
        "identifier": [{"system": "urn:other", "value": "x"}, {"type": MRN, "value": "MRN-0042"}],
    }
    assert ehr_label(patient) == "Sam Q Synthetic (MRN MRN-0042)"
    assert ehr_label({"identifier": [{"type": MRN, "value": "7"}]}) == "MRN 7"
    assert ehr_label({"name": [{"text": "Alex Example"}]}) == "Alex Example"
    assert ehr_label({}) is None


def test_label_order_link_then_identifier_then_fallback(caller: Caller, engine: Engine) -> None:
    tenant = tenant_id(engine, caller)
    linked = post_reports(
        caller, [report("lab-1", "phq-9", "2026-05-01T09:00:00Z", answers=phq9_answers(5))]
    )
    plain = post_reports(
        caller, [report("lab-2", "phq-9", "2026-05-01T09:00:00Z", answers=phq9_answers(5))]
    )
    with session_scope(engine) as session:
        connection = EhrConnection(
            id=str(uuid.uuid4()), tenant_id=tenant, name=f"ehr-{uuid.uuid4().hex[:6]}",
            fhir_base_url="https://ehr.example/fhir", client_id="c", scope="system/*.rs",
        )  # fmt: skip
        session.add(connection)
        session.flush()
        session.add(
            PatientLink(
                connection_id=connection.id,
                patient_id=linked,
                state=LinkState.LINKED,
                ehr_patient_id="e-1",
                ehr_label="Jo Synthetic (MRN 123)",
            )  # fmt: skip
        )
    with session_scope(engine) as session:
        assert patient_label(session, tenant, linked) == "Jo Synthetic (MRN 123)"
        assert patient_label(session, tenant, plain) == "lab-2"
        labels = patient_labels(session, tenant, [linked, plain, "unknown-patient-id"])
        assert labels["unknown-patient-id"] == "Patient unknown-"
        # Another tenant sees none of it.
        assert patient_label(session, "t_someone_else", linked) == "Patient " + linked[:8]
