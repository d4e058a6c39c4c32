"""Small builders for FHIR datatypes shared by the mapping modules."""

from datetime import datetime
from typing import Any

from careloop.fhir.errors import MappingError
from careloop.fhir.terminology import OBSERVATION_CATEGORY, SURVEY


def fhir_datetime(value: datetime, field: str) -> str:
    """``value`` as a FHIR dateTime/instant; MappingError on ``field`` if it is naive."""
    if not isinstance(value, datetime):
        raise MappingError(field, "must be a date-time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise MappingError(field, "must include a timezone offset")
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    """A Coding."""
    result: dict[str, Any] = {"system": system, "code": code}
    if display is not None:
        result["display"] = display
    return result


def concept(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    """A CodeableConcept with one coding and a text (the display unless given)."""
    return {"coding": [coding(system, code, display)], "text": text or display}


def reference(resource_type: str, resource_id: str) -> dict[str, str]:
    """A literal relative reference ``{type}/{id}``."""
    return {"reference": f"{resource_type}/{resource_id}"}


def survey_category() -> list[dict[str, Any]]:
    """Observation.category = survey."""
    return [{"coding": [coding(OBSERVATION_CATEGORY, SURVEY, "Survey")], "text": "Survey"}]
