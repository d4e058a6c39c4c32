"""Parsing FHIR-native input from apps: PHQ-9 / PHQ-2 / GAD-7 QuestionnaireResponses.

The instrument is recognised from ``questionnaire`` (careloop canonical or LOINC style
``http://loinc.org/q/{panel}``) or, failing that, from item linkIds equal to the LOINC item
codes (a ``/``-path such as ``/44249-1/44250-9`` is read by its last segment; groups are walked).
Answers are LOINC answer codings (LA codes) or ``valueInteger`` scores.
"""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from careloop.fhir.terminology import (
    LOINC,
    SCORED_INSTRUMENTS,
    ChoiceItem,
    ScoredInstrument,
    instrument_for_questionnaire,
)
from careloop.fhir.validation import FhirValidationError, FieldIssue, validate_resource

ROOT = "QuestionnaireResponse"
LAST_YEAR = 9998
"""The last year careloop stores (a range ending in it must still be representable)."""
ACCEPTED_STATUSES = frozenset({"completed", "amended"})
_PATIENT_REFERENCE = re.compile(r"(?:.*/)?Patient/[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class ParsedQuestionnaire:
    """The content of an app's scored QuestionnaireResponse."""

    instrument: str
    answers: tuple[int, ...]
    difficulty: int | None
    patient_reference: str  # e.g. "Patient/abc" as given in subject.reference
    authored: datetime  # aware


@dataclass(frozen=True)
class _Answered:
    expression: str  # of the item
    item: dict[str, Any]


def _link_code(link_id: str) -> str:
    return link_id.rstrip("/").rsplit("/", 1)[-1]


def _flatten(items: list[dict[str, Any]], path: str, out: dict[str, list[_Answered]]) -> None:
    for i, item in enumerate(items):
        expression = f"{path}.item[{i}]"
        out.setdefault(_link_code(item["linkId"]), []).append(_Answered(expression, item))
        _flatten(item.get("item", []), expression, out)
        for j, answer in enumerate(item.get("answer", [])):
            _flatten(answer.get("item", []), f"{expression}.answer[{j}]", out)


def _infer_instrument(codes: set[str]) -> ScoredInstrument | None:
    for instrument in SCORED_INSTRUMENTS.values():
        if {item.code for item in instrument.items} == codes & _all_item_codes():
            return instrument
    return None


def _all_item_codes() -> set[str]:
    return {item.code for spec in SCORED_INSTRUMENTS.values() for item in spec.items}


def _score(
    item: ChoiceItem, found: list[_Answered] | None, where: str, issues: list[FieldIssue]
) -> int | None:
    """The score of ``item``'s single answer, or None with an issue appended."""
    if not found:
        issues.append(FieldIssue(where, f"missing the answer to item {item.code}"))
        return None
    if len(found) > 1:
        issues.append(FieldIssue(found[1].expression, f"item {item.code} is answered twice"))
        return None
    expression, answers = found[0].expression, found[0].item.get("answer", [])
    if len(answers) != 1:
        issues.append(FieldIssue(f"{expression}.answer", "needs exactly one answer"))
        return None
    answer = answers[0]
    scores = {o.score for o in item.options}
    if "valueCoding" in answer:
        value_coding = answer["valueCoding"]
        option = item.option_for_code(value_coding.get("code", ""))
        if option is None or value_coding.get("system", LOINC) != LOINC:
            issues.append(
                FieldIssue(f"{expression}.answer[0].valueCoding", "not a LOINC answer of this item")
            )
            return None
        return option.score
    if "valueInteger" in answer:
        if answer["valueInteger"] not in scores:
            issues.append(
                FieldIssue(
                    f"{expression}.answer[0].valueInteger",
                    f"must be between {min(scores)} and {max(scores)}",
                )
            )
            return None
        return int(answer["valueInteger"])
    issues.append(FieldIssue(f"{expression}.answer[0]", "must be a valueCoding or valueInteger"))
    return None


def _authored(qr: dict[str, Any], issues: list[FieldIssue]) -> datetime | None:
    where = f"{ROOT}.authored"
    raw = qr.get("authored")
    if not isinstance(raw, str):
        issues.append(FieldIssue(where, "required: when the patient answered"))
        return None
    try:
        authored = datetime.fromisoformat(raw)
    except ValueError:
        authored = None
    if authored is None or "T" not in raw or authored.utcoffset() is None:
        issues.append(FieldIssue(where, "must be a date-time with time and timezone offset"))
        return None
    try:
        in_utc = authored.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not 1 <= in_utc.year <= LAST_YEAR:
        issues.append(FieldIssue(where, f"must lie between the years 1 and {LAST_YEAR}"))
        return None
    return authored


def _patient_reference(qr: dict[str, Any], issues: list[FieldIssue]) -> str | None:
    ref = qr.get("subject", {}).get("reference")
    if not isinstance(ref, str) or not _PATIENT_REFERENCE.fullmatch(ref):
        issues.append(FieldIssue(f"{ROOT}.subject", "must reference the Patient (Patient/{id})"))
        return None
    return ref


def parse_questionnaire_response(qr: dict[str, Any]) -> ParsedQuestionnaire:
    """Read instrument, answers, subject and authored time from an app's QuestionnaireResponse.

    Validates the resource first; raises FhirValidationError listing every problem found.
    """
    resource = validate_resource(qr)
    if resource["resourceType"] != ROOT:
        raise FhirValidationError([FieldIssue("resourceType", f"must be {ROOT}")])
    issues: list[FieldIssue] = []
    if resource["status"] not in ACCEPTED_STATUSES:
        issues.append(FieldIssue(f"{ROOT}.status", "must be completed or amended"))
    patient_reference = _patient_reference(resource, issues)
    authored = _authored(resource, issues)

    found: dict[str, list[_Answered]] = {}
    _flatten(resource.get("item", []), ROOT, found)
    canonical = resource.get("questionnaire")
    spec = instrument_for_questionnaire(canonical) if canonical else None
    if spec is None:
        spec = _infer_instrument(set(found))
    if spec is None:
        issues.append(FieldIssue(f"{ROOT}.questionnaire", "not a PHQ-9, PHQ-2 or GAD-7 response"))
        raise FhirValidationError(issues)

    scores = [_score(item, found.get(item.code), f"{ROOT}.item", issues) for item in spec.items]
    difficulty = None
    if spec.difficulty is not None and spec.difficulty.code in found:
        difficulty = _score(spec.difficulty, found[spec.difficulty.code], f"{ROOT}.item", issues)
    total_items = found.get(spec.total.code, [])
    if not issues and total_items:
        _check_total(total_items[0], sum(s for s in scores if s is not None), issues)
    if issues:
        raise FhirValidationError(issues)
    assert patient_reference is not None and authored is not None
    return ParsedQuestionnaire(
        instrument=spec.key,
        answers=tuple(s for s in scores if s is not None),
        difficulty=difficulty,
        patient_reference=patient_reference,
        authored=authored,
    )


def _check_total(total: _Answered, expected: int, issues: list[FieldIssue]) -> None:
    answers = total.item.get("answer", [])
    value = answers[0].get("valueInteger") if len(answers) == 1 else None
    if value is not None and value != expected:
        issues.append(
            FieldIssue(
                f"{total.expression}.answer[0].valueInteger",
                "does not equal the sum of the answers",
            )
        )
