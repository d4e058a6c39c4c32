"""Every Safe Harbor identifier planted in a patient's record is absent from the research export.

The record is written the way careloop gets one: a symptom report through the app API (its note
carries a planted code), the EHR's richer Patient, Encounter, RiskAssessment, Observations and a
QuestionnaireResponse into the store. The real ``careloop export`` command writes the files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select
from support.builder_proofs import assert_valid
from support.clients import Caller
from support.reports import phq9

from careloop.fhir.deidentify import AGE_GROUP_URL
from careloop.services.patients.service import patient_exists
from careloop.services.store.models import FhirResource
from careloop.services.store.repository import ResourceStore
from careloop.services.unit_of_work import session_scope

APP = "https://app.example/patients"

# Synthetic values of the 18 Safe Harbor kinds (45 CFR 164.514(b)(2)(i)(A)-(R)).
NAME = ["Zelda", "Quimbyworth", "Ignatius Quimbyworth"]
GEOGRAPHY = ["742 Evergreen Terrace", "Apt 9Q", "Springfieldia", "Quahog County", "03601"]
DATES = ["1931-03-17", "2026-10-05T08:15:00Z", "2026-10-09T16:40:00Z", "2026-11-01T03:00:00Z"]
PHONE, FAX, EMAIL = "+1-555-010-4477", "+1-555-010-9988", "zelda.q@mail.example"
SSN, MRN, PLAN, ACCOUNT = "078-05-1120", "MRN-88231774", "HPB-55001234", "ACCT-99120001"
LICENSE, PLATE, VIN = "LIC-D4471923", "PLATE-7XKZ991", "1HGCM82633A004352"
DEVICE, URL, IP = "SN-DEV-55310977", "https://zelda-quimbyworth.example/blog", "203.0.113.77"
BIOMETRIC, PHOTO, UNIQUE = "FPRINT-a1b2c3d4e5", "https://photos.example/zelda-face.jpg", "UQ-4412X"
PLANTED = [
    *NAME, *GEOGRAPHY, *DATES, PHONE, FAX, EMAIL, SSN, MRN, PLAN, ACCOUNT, LICENSE, PLATE, VIN,
    DEVICE, URL, IP, BIOMETRIC, PHOTO, UNIQUE, "p-zelda", "Ward 7 Bed 3", "Route 9 collision",
]  # fmt: skip


def _ident(system: str, value: str, code: str | None = None) -> dict[str, Any]:
    ident: dict[str, Any] = {"system": system, "value": value}
    if code:
        v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
        ident["type"] = {"coding": [{"system": v2, "code": code}], "text": f"{code} {value}"}
    return ident


def _patient(pid: str, app_value: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{NAME[2]}</div>',
        },
        "identifier": [
            _ident(APP, app_value),
            _ident("http://hl7.org/fhir/sid/us-ssn", SSN, "SS"),
            _ident("https://hospital.example/mrn", MRN, "MR"),
            _ident("https://plan.example/member", PLAN, "MB"),
            _ident("https://hospital.example/account", ACCOUNT, "AN"),
            _ident("https://dmv.example/license", LICENSE, "DL"),
        ],
        "active": True,
        "name": [{"family": NAME[1], "given": [NAME[0]], "text": NAME[2]}],
        "telecom": [
            {"system": "phone", "value": PHONE, "use": "home"},
            {"system": "fax", "value": FAX},
            {"system": "email", "value": EMAIL},
            {"system": "url", "value": URL},
        ],
        "gender": "female",
        "birthDate": DATES[0],
        "deceasedDateTime": DATES[3],
        "address": [
            {
                "use": "home",
                "line": [GEOGRAPHY[0], GEOGRAPHY[1]],
                "city": GEOGRAPHY[2],
                "district": GEOGRAPHY[3],
                "state": "NH",
                "postalCode": GEOGRAPHY[4],
                "country": "US",
                "text": f"{GEOGRAPHY[0]}, {GEOGRAPHY[2]}",
            }
        ],
        "multipleBirthInteger": 2,
        "photo": [{"contentType": "image/jpeg", "url": PHOTO, "title": f"face of {NAME[0]}"}],
        "contact": [{"name": {"family": NAME[1]}, "telecom": [{"system": "phone", "value": FAX}]}],
        "extension": [
            {"url": "https://hospital.example/fhir/biometric", "valueString": BIOMETRIC},
            {"url": "https://hospital.example/fhir/homepage", "valueUrl": URL},
            {"url": "https://dmv.example/fhir/vehicle", "valueIdentifier": {"value": PLATE}},
        ],
    }


def _record(patient: str) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{patient}", "display": NAME[2]}
    loinc = "http://loinc.org"
    return [
        {
            "resourceType": "Observation",
            "id": "obs-free-text",
            "status": "final",
            "code": {"coding": [{"system": loinc, "code": "75275-8", "display": NAME[0]}]},
            "subject": subject,
            "effectiveDateTime": DATES[1],
            "issued": DATES[2],
            "performer": [{"display": NAME[2]}],
            "device": {"display": DEVICE, "identifier": {"value": DEVICE}},
            "note": [{"text": f"seen from {IP}, mail {EMAIL}"}],
            "valueString": f"plate {PLATE}",
            "component": [
                {"code": {"text": "vehicle"}, "valueString": VIN},
                {"code": {"coding": [{"system": loinc, "code": "8302-2"}]}, "valueInteger": 160},
            ],
        },
        {
            "resourceType": "Observation",
            "id": "obs-age",
            "status": "final",
            "code": {"coding": [{"system": loinc, "code": "30525-0"}], "text": "Age"},
            "subject": subject,
            "effectivePeriod": {"start": DATES[1], "end": DATES[2]},
            "valueQuantity": {
                "value": 95,
                "unit": "years",
                "system": "http://unitsofmeasure.org",
                "code": "a",
            },
        },
        {
            "resourceType": "QuestionnaireResponse",
            "id": "qr-intake",
            "status": "completed",
            "subject": subject,
            "authored": DATES[1],
            "author": {"display": NAME[2]},
            "item": [
                {"linkId": "vehicle", "text": "Your car?", "answer": [{"valueString": VIN}]},
                {"linkId": "admitted", "answer": [{"valueDate": DATES[1][:10]}]},
                {"linkId": "count", "answer": [{"valueInteger": 3}]},
            ],
        },
        {
            "resourceType": "Encounter",
            "id": "enc-stay",
            "status": "finished",
            "class": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "IMP",
                "display": "inpatient",
            },
            "subject": subject,
            "period": {"start": DATES[1], "end": DATES[2]},
            "location": [{"location": {"display": "Ward 7 Bed 3"}}],
            "reasonCode": [{"text": "Route 9 collision"}],
            "identifier": [_ident("https://hospital.example/visit", UNIQUE)],
        },
        {
            "resourceType": "RiskAssessment",
            "id": "risk-fall",
            "status": "final",
            "subject": subject,
            "occurrenceDateTime": DATES[2],
            "basis": [{"reference": "Observation/obs-age", "display": f"{NAME[0]}'s age"}],
            "prediction": [{"probabilityDecimal": 0.4, "rationale": f"lives at {GEOGRAPHY[0]}"}],
            "note": [{"text": f"call {PHONE}"}],
        },
    ]


def _store(engine: Engine, tenant: str, resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        assert_valid(resource)  # the input is valid FHIR, so the output has to be
    with session_scope(engine) as session:
        store = ResourceStore(session, tenant)
        patients = [r for r in resources if r["resourceType"] == "Patient"]
        for patient in patients:
            store.update(patient)
        store.create_many([r for r in resources if r["resourceType"] != "Patient"])


def _patient_id(engine: Engine, tenant: str, value: str) -> str:
    with session_scope(engine) as session:
        found = patient_exists(session, tenant, (APP, value))
    assert found is not None
    return found


def _stored_text(engine: Engine, tenant: str) -> str:
    with session_scope(engine) as session:
        rows = session.exec(select(FhirResource).where(FhirResource.tenant_id == tenant)).all()
        return "\n".join(r.content for r in rows)


def _read(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(out.glob("*.ndjson"))
    }


def _permit(caller: Caller, value: str) -> None:
    body = {"patient": {"system": APP, "value": value}, "decision": "permit"}
    response = caller.post("/v1/consents", json={**body, "purpose": "research-export"})
    assert response.status_code == 201, response.text


def test_no_safe_harbor_identifier_survives(
    caller: Caller, engine: Engine, tenant: str, export: Any, tmp_path: Path
) -> None:
    report = phq9("p-zelda", note=f"my code is {UNIQUE}", effective=DATES[1])
    assert caller.post("/v1/symptom-reports", json=report).status_code == 201
    assert caller.post("/v1/symptom-reports", json=phq9("p-young")).status_code == 201
    zelda, young = _patient_id(engine, tenant, "p-zelda"), _patient_id(engine, tenant, "p-young")
    forty = {
        **_patient(young, "p-young"),
        "birthDate": "1986-02-03",
        "address": [{"state": "ny", "postalCode": "12345-6789", "country": "US"}],
    }
    _store(engine, tenant, [_patient(zelda, "p-zelda"), forty, *_record(zelda)])
    _permit(caller, "p-zelda")
    _permit(caller, "p-young")
    stored = _stored_text(engine, tenant)
    assert [p for p in PLANTED if p not in stored] == []  # planted, so their absence means it
    out = tmp_path / "export"

    printed = export("--deidentify", "--tenant", tenant, "--out", str(out)).output

    files = _read(out)
    assert set(files) == {
        "Patient", "Observation", "QuestionnaireResponse", "RiskAssessment", "Encounter"
    }  # fmt: skip
    text = "\n".join(p.read_text() for p in out.iterdir())
    for planted in [*PLANTED, zelda, young, tenant]:
        assert planted.lower() not in text.lower(), planted
        assert planted not in printed
    assert not re.search(r"\d{4}-\d{2}", text), "a date beyond its year"
    assert not re.search(r"T\d{2}:\d{2}", text), "a time"
    assert "patients exported: 2, withheld: 0" in printed
    for lines in files.values():
        for resource in lines:
            assert_valid(resource)

    [old, young_out] = sorted(files["Patient"], key=lambda p: "birthDate" in p)
    assert "birthDate" not in old
    assert {"url": AGE_GROUP_URL, "valueCode": "90+"} in old["extension"]
    assert old["address"] == [{"use": "home", "country": "US", "state": "NH", "postalCode": "000"}]
    assert old["deceasedDateTime"] == "2026"
    assert "multipleBirthInteger" not in old and "photo" not in old and "telecom" not in old
    assert young_out["birthDate"] == "1986"
    assert young_out["address"] == [{"country": "US", "state": "NY", "postalCode": "123"}]

    # the keyed hash links Zelda's resources across the files
    link = f"Patient/{old['id']}"
    theirs = [r for t, rs in files.items() if t != "Patient" for r in rs]
    mine = [r for r in theirs if r["subject"]["reference"] == link]
    assert len(mine) >= len(_record(zelda)) + 1  # the planted ones and the report's
    by_type = {r["resourceType"] for r in mine}
    assert by_type == {"Observation", "QuestionnaireResponse", "Encounter", "RiskAssessment"}
    age = next(r for r in files["Observation"] if r.get("valueQuantity", {}).get("code") == "a")
    assert age["valueQuantity"]["value"] == 90 and age["valueQuantity"]["comparator"] == ">="
    assert age["effectivePeriod"] == {"start": "2026", "end": "2026"}
    [risk] = files["RiskAssessment"]
    assert risk["basis"] == [{"reference": f"Observation/{age['id']}"}]
    encounter = files["Encounter"][0]
    assert encounter["period"] == {"start": "2026", "end": "2026"}
