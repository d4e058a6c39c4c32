"""map_encounter: telehealth sessions as R4 Encounters."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.encounter import Encounter

from careloop.fhir.encounters import TelehealthSession, map_encounter
from careloop.fhir.errors import MappingError

START = datetime(2024, 7, 1, 14, 0, tzinfo=UTC)
SESSION = TelehealthSession(
    session_id="sess-1",
    patient_id="pat-1",
    practitioner=("http://hl7.org/fhir/sid/us-npi", "1234567893"),
    status="finished",
    modality="video",
    start=START,
    end=START + timedelta(minutes=30),
    platform="SyntheticMeet",
    reason="Follow-up of raised PHQ-9",
)


def test_finished_video_session() -> None:
    enc = map_encounter(SESSION)
    Encounter.model_validate(enc)
    assert enc["id"] == "sess-1"
    assert enc["identifier"] == [
        {"system": "https://careloop.io/fhir/sid/encounter", "value": "sess-1"}
    ]
    assert enc["status"] == "finished"
    assert enc["class"] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "VR",
        "display": "virtual",
    }
    assert enc["subject"] == {"reference": "Patient/pat-1"}
    assert enc["period"] == {"start": "2024-07-01T14:00:00Z", "end": "2024-07-01T14:30:00Z"}
    assert enc["reasonCode"] == [{"text": "Follow-up of raised PHQ-9"}]
    assert enc["extension"] == [
        {
            "url": "https://careloop.io/fhir/StructureDefinition/telehealth-platform",
            "valueString": "SyntheticMeet",
        }
    ]
    (participant,) = enc["participant"]
    assert participant["type"][0]["coding"][0]["code"] == "PPRF"
    assert participant["individual"] == {
        "type": "Practitioner",
        "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
    }
    codes = {(c["system"], c["code"]) for c in enc["type"][0]["coding"]}
    assert ("http://snomed.info/sct", "448337001") in codes
    assert ("https://careloop.io/fhir/CodeSystem/telehealth-modality", "video") in codes


@pytest.mark.parametrize(
    ("modality", "snomed"), [("video", "448337001"), ("phone", "185317003"), ("chat", None)]
)
def test_modality_types(modality: str, snomed: str | None) -> None:
    enc = map_encounter(replace(SESSION, modality=modality))
    codings = enc["type"][0]["coding"]
    assert [c["code"] for c in codings if c["system"] == "http://snomed.info/sct"] == (
        [snomed] if snomed else []
    )
    assert codings[-1]["code"] == modality
    assert enc["type"][0]["text"]


@pytest.mark.parametrize("status", ["planned", "in-progress", "finished", "cancelled"])
def test_statuses(status: str) -> None:
    assert map_encounter(replace(SESSION, status=status))["status"] == status


def test_planned_session_without_optional_parts() -> None:
    session = replace(
        SESSION, status="planned", practitioner=None, end=None, platform=None, reason=None
    )
    enc = map_encounter(session)
    Encounter.model_validate(enc)
    assert enc["period"] == {"start": "2024-07-01T14:00:00Z"}
    for absent in ("participant", "reasonCode", "extension"):
        assert absent not in enc
    assert "period" not in map_encounter(replace(session, start=None))


def test_mapping_is_stable_across_versions() -> None:
    assert map_encounter(SESSION)["id"] == map_encounter(replace(SESSION, status="cancelled"))["id"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"end": START - timedelta(seconds=1)}, "end"),
        ({"end": datetime(2024, 7, 1, 15, 0)}, "end"),
        ({"start": datetime(2024, 7, 1, 14, 0)}, "start"),
        ({"status": "arrived"}, "status"),
        ({"status": "completed"}, "status"),
        ({"modality": "fax"}, "modality"),
        ({"session_id": "has space"}, "session_id"),
    ],
)
def test_errors(changes: dict[str, object], field: str) -> None:
    with pytest.raises(MappingError) as info:
        map_encounter(replace(SESSION, **changes))  # type: ignore[arg-type]
    assert info.value.field == field
