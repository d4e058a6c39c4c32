"""What a resource can be searched by: its patient, its date range and its tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from careloop.services.common.fhirtime import parse_fhir_datetime_range


@dataclass
class SearchValues:
    """The values of one resource that the store indexes."""

    patient_id: str | None = None
    date_lo: datetime | None = None
    date_hi: datetime | None = None
    tokens: list[tuple[str, str, str]] = field(default_factory=list)
    """(param, system, code) triples."""


def _codings(concept: Any) -> Iterator[tuple[str, str]]:
    if isinstance(concept, dict):
        for coding in concept.get("coding", []):
            if "code" in coding:
                yield coding.get("system", ""), coding["code"]


def _identifiers(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
    identifiers = resource.get("identifier", [])
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    for ident in identifiers:
        if "value" in ident:
            yield ident.get("system", ""), ident["value"]


def _patient_from(reference: Any) -> str | None:
    if isinstance(reference, dict):
        ref = reference.get("reference", "")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.removeprefix("Patient/").split("/")[0]
    return None


def _range(value: str | None) -> tuple[datetime | None, datetime | None]:
    if not value:
        return None, None
    return parse_fhir_datetime_range(value)


def _period(period: Any) -> tuple[datetime | None, datetime | None]:
    if not isinstance(period, dict):
        return None, None
    lo, _ = _range(period.get("start"))
    _, hi = _range(period.get("end"))
    if lo is None and hi is not None:
        lo = datetime.min.replace(tzinfo=UTC)
    if hi is None and lo is not None:
        hi = lo if period.get("end") else datetime.max.replace(tzinfo=UTC) - timedelta(days=1)
    return lo, hi


_PATIENT_ELEMENTS = ("subject", "patient", "for", "beneficiary")
_DATE_ELEMENTS = {
    "Observation": ("effectiveDateTime", "effectiveInstant"),
    "QuestionnaireResponse": ("authored",),
    "Provenance": ("recorded",),
    "Communication": ("sent",),
    "Task": ("authoredOn",),
    "Consent": ("dateTime",),
}
_STATUS_TYPES = {
    "Observation",
    "Encounter",
    "QuestionnaireResponse",
    "Task",
    "CarePlan",
    "CareTeam",
    "Communication",
    "Consent",
}
_REFERENCE_PARAMS = {
    "Provenance": (("target", "target"),),
    "Task": (("focus", "focus"), ("owner", "owner")),
    "Communication": (("about", "about"),),
    "PractitionerRole": (("practitioner", "practitioner"),),
}


def _references(value: Any) -> Iterator[str]:
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict) and isinstance(item.get("reference"), str):
            yield item["reference"]


def extract_search_values(resource: dict[str, Any]) -> SearchValues:
    """The patient, date range and tokens of ``resource`` (already valid FHIR)."""
    rtype = resource["resourceType"]
    values = SearchValues()
    if rtype == "Patient":
        values.patient_id = resource.get("id")
    else:
        for name in _PATIENT_ELEMENTS:
            values.patient_id = _patient_from(resource.get(name))
            if values.patient_id:
                break
    tokens = values.tokens
    for system, value in _identifiers(resource):
        tokens.append(("identifier", system, value))
    if rtype in _STATUS_TYPES and "status" in resource:
        tokens.append(("status", "", resource["status"]))
    if rtype == "Observation":
        tokens.extend(("code", s, c) for s, c in _codings(resource.get("code")))
        for category in resource.get("category", []):
            tokens.extend(("category", s, c) for s, c in _codings(category))
        if "effectivePeriod" in resource:
            values.date_lo, values.date_hi = _period(resource["effectivePeriod"])
    elif rtype == "Encounter":
        cls = resource.get("class")
        if isinstance(cls, dict) and "code" in cls:
            tokens.append(("class", cls.get("system", ""), cls["code"]))
        values.date_lo, values.date_hi = _period(resource.get("period"))
    elif rtype == "QuestionnaireResponse" and "questionnaire" in resource:
        tokens.append(("questionnaire", "", resource["questionnaire"]))
    elif rtype == "Goal" and "lifecycleStatus" in resource:
        tokens.append(("lifecycle-status", "", resource["lifecycleStatus"]))
    for param, element in _REFERENCE_PARAMS.get(rtype, ()):
        tokens.extend((param, "", ref) for ref in _references(resource.get(element)))
    for name in _DATE_ELEMENTS.get(rtype, ()):
        if name in resource:
            values.date_lo, values.date_hi = _range(resource[name])
            break
    return values
