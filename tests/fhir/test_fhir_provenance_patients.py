"""map_provenance and map_patient."""

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.provenance import Provenance
from fhirpathpy import evaluate

from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import deterministic_id
from careloop.fhir.patients import map_patient
from careloop.fhir.provenance import map_provenance

RECORDED = datetime(2024, 5, 1, 6, 31, tzinfo=UTC)
TARGETS = ["QuestionnaireResponse/qr-1", "Observation/obs-1"]


def test_provenance_shape() -> None:
    prov = map_provenance("report-1", TARGETS, RECORDED, "moodapp", "pat-1")
    Provenance.model_validate(prov)
    assert prov["id"] == deterministic_id("report-1", "provenance")
    assert prov["target"] == [{"reference": t} for t in TARGETS]
    assert prov["recorded"] == "2024-05-01T06:31:00Z"
    assert prov["activity"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": "CREATE",
            "display": "create",
        }
    ]
    assert prov["extension"] == [
        {
            "url": "https://careloop.io/fhir/StructureDefinition/business-identifier",
            "valueIdentifier": {
                "system": "https://careloop.io/fhir/sid/provenance",
                "value": "report-1",
            },
        }
    ]
    app, patient = prov["agent"]
    assert app["type"]["coding"][0]["code"] == "assembler"
    assert app["who"]["identifier"] == {
        "system": "https://careloop.io/fhir/sid/app-client",
        "value": "moodapp",
    }
    assert app["who"]["display"]
    assert patient["type"]["coding"][0]["code"] == "informant"
    assert patient["who"] == {"reference": "Patient/pat-1"}
    assert evaluate(prov, "agent.who.reference") == ["Patient/pat-1"]


def test_provenance_update_and_determinism() -> None:
    prov = map_provenance("sess-1/v2", ["Encounter/sess-1"], RECORDED, "tele", "p", "UPDATE")
    assert prov["activity"]["coding"][0]["code"] == "UPDATE"
    assert prov == map_provenance(
        "sess-1/v2", ["Encounter/sess-1"], RECORDED, "tele", "p", "UPDATE"
    )


@pytest.mark.parametrize(
    ("targets", "recorded", "activity", "field"),
    [
        ([], RECORDED, "CREATE", "targets"),
        (["no-type"], RECORDED, "CREATE", "targets"),
        (TARGETS, datetime(2024, 5, 1), "CREATE", "recorded"),
        (TARGETS, RECORDED, "READ", "activity"),
    ],
)
def test_provenance_errors(
    targets: list[str], recorded: datetime, activity: str, field: str
) -> None:
    with pytest.raises(MappingError) as info:
        map_provenance("r", targets, recorded, "app", "pat", activity)
    assert info.value.field == field


def test_patient() -> None:
    ident = ("https://moodapp.example/patients", "u-42")
    patient = map_patient("pat-1", [ident, ident])
    Patient.model_validate(patient)
    assert patient["id"] == "pat-1"
    assert patient["active"] is True
    assert patient["identifier"] == [
        {"system": "https://moodapp.example/patients", "value": "u-42"},
        {"system": "https://careloop.io/fhir/sid/patient", "value": "pat-1"},
    ]
    assert "name" not in patient


def test_patient_rejects_empty_identifier() -> None:
    with pytest.raises(MappingError) as info:
        map_patient("pat-1", [("sys", "v"), ("", "x")])
    assert info.value.field == "identifiers[1]"
