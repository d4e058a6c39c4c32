"""Business identifiers and deterministic ids."""

import uuid

import pytest

from careloop.fhir.identifiers import IDENTIFIER_BASE, business_identifier, deterministic_id


def test_business_identifier() -> None:
    assert IDENTIFIER_BASE == "https://careloop.io/fhir/sid"
    assert business_identifier("observation", "r-1") == {
        "system": "https://careloop.io/fhir/sid/observation",
        "value": "r-1",
    }
    with pytest.raises(ValueError):
        business_identifier("banana", "r-1")


def test_deterministic_id_is_stable_uuid5() -> None:
    first = deterministic_id("3f1c0e2a-0000-4000-8000-000000000001", "observation")
    assert first == deterministic_id("3f1c0e2a-0000-4000-8000-000000000001", "observation")
    assert uuid.UUID(first).version == 5
    # pinned: changing the namespace would orphan every stored resource
    assert deterministic_id("report-1", "observation") == "373d5d5b-9533-5c91-ae35-d88cd38cbba5"


def test_deterministic_id_differs_by_role_and_report() -> None:
    ids = {
        deterministic_id("r1", "observation"),
        deterministic_id("r1", "questionnaire-response"),
        deterministic_id("r2", "observation"),
    }
    assert len(ids) == 3
