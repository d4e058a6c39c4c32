"""What a resource can be searched by: its patient, its date range and its tokens.

Extraction also reports every indexed value the store cannot hold (a token over its column, a
NUL, a date outside the years careloop stores), named by its element, so a write can refuse the
resource with a 422 before any work instead of failing in the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from careloop.services.common.bounds import NUL
from careloop.services.common.fhirtime import FhirTimeError, parse_fhir_datetime_range
from careloop.services.store.models import ID_LENGTH, TOKEN_LENGTH


@dataclass
class SearchValues:
    """The values of one resource that the store indexes."""

    patient_id: str | None = None
    date_lo: datetime | None = None
    date_hi: datetime | None = None
    tokens: list[tuple[str, str, str]] = field(default_factory=list)
    """(param, system, code) triples."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(element, message) of values the index cannot hold; such a resource is not stored."""

    def text(self, value: Any, where: str, limit: int = TOKEN_LENGTH) -> str | None:
        """``value`` if the index can hold it, else None with a problem noted at ``where``."""
        if not isinstance(value, str):
            self.problems.append((where, "must be a string"))
            return None
        if NUL in value:
            self.problems.append((where, "must not contain NUL characters"))
            return None
        if len(value) > limit:
            self.problems.append((where, f"must be at most {limit} characters"))
            return None
        return value

    def token(self, param: str, system: Any, code: Any, where: str, system_at: str = "") -> None:
        """Index ``system|code`` for ``param`` (``where`` names the code, ``system_at`` the
        system)."""
        code_text = self.text(code, where)
        system_text = self.text(system, system_at) if system_at else ""
        if code_text is not None and system_text is not None:
            self.tokens.append((param, system_text, code_text))

    def instant_range(self, value: Any, where: str) -> tuple[datetime | None, datetime | None]:
        """The range a FHIR date/dateTime covers, or (None, None) with a problem noted."""
        if value is None or value == "":
            return None, None
        if not isinstance(value, str):
            self.problems.append((where, "must be a date or dateTime"))
            return None, None
        try:
            return parse_fhir_datetime_range(value)
        except FhirTimeError as exc:
            self.problems.append((where, str(exc)))
            return None, None


def _list(value: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Items of a FHIR repeating element with their paths (a single object counts as one)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield item, f"{where}[{i}]"
    elif value is not None:
        yield value, where


def _codings(values: SearchValues, param: str, concept: Any, where: str) -> None:
    if not isinstance(concept, dict):
        return
    for coding, at in _list(concept.get("coding"), f"{where}.coding"):
        if isinstance(coding, dict) and "code" in coding:
            values.token(
                param, coding.get("system", ""), coding["code"], f"{at}.code", f"{at}.system"
            )


def _identifiers(values: SearchValues, resource: dict[str, Any], root: str) -> None:
    for ident, at in _list(resource.get("identifier"), f"{root}.identifier"):
        if isinstance(ident, dict) and "value" in ident:
            values.token(
                "identifier", ident.get("system", ""), ident["value"], f"{at}.value", f"{at}.system"
            )


def _patient_from(values: SearchValues, reference: Any, where: str) -> str | None:
    if isinstance(reference, dict):
        ref = reference.get("reference", "")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            patient = ref.removeprefix("Patient/").split("/")[0]
            return values.text(patient, f"{where}.reference", ID_LENGTH)
    return None


def _period(
    values: SearchValues, period: Any, where: str
) -> tuple[datetime | None, datetime | None]:
    if not isinstance(period, dict):
        return None, None
    lo, _ = values.instant_range(period.get("start"), f"{where}.start")
    _, hi = values.instant_range(period.get("end"), f"{where}.end")
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
    "RiskAssessment": ("occurrenceDateTime",),
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
    "RiskAssessment",
}
_REFERENCE_PARAMS = {
    "Provenance": (("target", "target"),),
    "Task": (("focus", "focus"), ("owner", "owner")),
    "Communication": (("about", "about"),),
    "PractitionerRole": (("practitioner", "practitioner"),),
    "Encounter": (("part-of", "partOf"),),
}


def _references(values: SearchValues, param: str, value: Any, where: str) -> None:
    for item, at in _list(value, where):
        if isinstance(item, dict) and isinstance(item.get("reference"), str):
            values.token(param, "", item["reference"], f"{at}.reference")


def extract_search_values(resource: dict[str, Any]) -> SearchValues:
    """The patient, date range and tokens of ``resource`` (already valid FHIR).

    ``problems`` lists the indexed values the store cannot hold; a caller must not store a
    resource that has any.
    """
    rtype = resource["resourceType"]
    values = SearchValues()
    if rtype == "Patient":
        values.patient_id = values.text(resource.get("id"), f"{rtype}.id", ID_LENGTH)
    else:
        for name in _PATIENT_ELEMENTS:
            values.patient_id = _patient_from(values, resource.get(name), f"{rtype}.{name}")
            if values.patient_id:
                break
    _identifiers(values, resource, rtype)
    if rtype in _STATUS_TYPES and "status" in resource:
        values.token("status", "", resource["status"], f"{rtype}.status")
    if rtype == "RiskAssessment":
        _codings(values, "code", resource.get("code"), f"{rtype}.code")
    if rtype == "Observation":
        _codings(values, "code", resource.get("code"), f"{rtype}.code")
        for category, at in _list(resource.get("category"), f"{rtype}.category"):
            _codings(values, "category", category, at)
        if "effectivePeriod" in resource:
            values.date_lo, values.date_hi = _period(
                values, resource["effectivePeriod"], f"{rtype}.effectivePeriod"
            )
    elif rtype == "Encounter":
        cls = resource.get("class")
        if isinstance(cls, dict) and "code" in cls:
            values.token(
                "class", cls.get("system", ""), cls["code"], f"{rtype}.class.code",
                f"{rtype}.class.system",
            )  # fmt: skip
        values.date_lo, values.date_hi = _period(values, resource.get("period"), f"{rtype}.period")
    elif rtype == "QuestionnaireResponse" and "questionnaire" in resource:
        values.token("questionnaire", "", resource["questionnaire"], f"{rtype}.questionnaire")
    elif rtype == "Goal" and "lifecycleStatus" in resource:
        values.token(
            "lifecycle-status", "", resource["lifecycleStatus"], f"{rtype}.lifecycleStatus"
        )
    elif rtype == "Group":
        for member, at in _list(resource.get("member"), f"{rtype}.member"):
            if isinstance(member, dict):
                _references(values, "member", member.get("entity"), f"{at}.entity")
    for param, element in _REFERENCE_PARAMS.get(rtype, ()):
        _references(values, param, resource.get(element), f"{rtype}.{element}")
    for name in _DATE_ELEMENTS.get(rtype, ()):
        if name in resource:
            values.date_lo, values.date_hi = values.instant_range(resource[name], f"{rtype}.{name}")
            break
    return values


def index_problems(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(element, message) of every indexed value of ``resource`` the store cannot hold."""
    return extract_search_values(resource).problems
