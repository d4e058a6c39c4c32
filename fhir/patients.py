"""The careloop Patient: identifiers only, since apps send no names or demographics."""

from collections.abc import Sequence
from typing import Any

from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import business_identifier
from careloop.fhir.validation import checked


def map_patient(patient_id: str, identifiers: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A validated Patient with the app's ``(system, value)`` identifiers plus careloop's own.

    Duplicate identifiers are dropped; an empty system or value raises MappingError
    (``identifiers[i]``).
    """
    entries: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, pair in enumerate(identifiers):
        system, value = pair
        if not system or not value:
            raise MappingError(f"identifiers[{i}]", "needs a system and a value")
        if (system, value) not in seen:
            seen.add((system, value))
            entries.append({"system": system, "value": value})
    entries.append(business_identifier("patient", patient_id))
    patient = {"resourceType": "Patient", "id": patient_id, "identifier": entries, "active": True}
    return checked(patient)
