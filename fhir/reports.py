"""Outbound mapping of app symptom reports to FHIR R4 resources.

A scored questionnaire (PHQ-9, PHQ-2, GAD-7) becomes a QuestionnaireResponse plus a total-score
Observation shaped after US Core "Observation Screening Assessment"; a single self-rating becomes
one Observation. Ids and business identifiers derive from ``ReportContext.report_id``, so mapping
the same report twice gives identical resources.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careloop.fhir.elements import coding, concept, fhir_datetime, reference, survey_category
from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import app_report_identifier, business_identifier, deterministic_id
from careloop.fhir.terminology import (
    LOINC,
    ORDINAL_VALUE_URL,
    RATING_INSTRUMENTS,
    SCORED_INSTRUMENTS,
    SEVERITY_BAND_SYSTEM,
    UCUM,
    AnswerOption,
    ChoiceItem,
    RatingInstrument,
    ScoredInstrument,
    severity_band,
)
from careloop.fhir.validation import checked


@dataclass(frozen=True)
class ReportContext:
    """What careloop knows about a report besides its answers."""

    report_id: str  # careloop uuid of this report; business identifiers and ids derive from it
    patient_id: str  # id of the careloop FHIR Patient
    effective: datetime  # timezone-aware, when the patient answered
    recorded: datetime  # timezone-aware, when careloop accepted it
    client_id: str  # the app client that posted it
    device_name: str | None = None
    device_version: str | None = None
    app_report_id: str | None = None  # the app's own id for the report
    note: str | None = None


def _scored_instrument(key: str) -> ScoredInstrument:
    instrument = SCORED_INSTRUMENTS.get(key)
    if instrument is None:
        raise MappingError("instrument", "not a known scored instrument")
    return instrument


def _check_score(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MappingError(field, "must be an integer")
    if not low <= value <= high:
        raise MappingError(field, f"must be between {low} and {high}")
    return value


def _checked_answers(instrument: ScoredInstrument, answers: Sequence[int]) -> list[int]:
    if isinstance(answers, str | bytes) or not isinstance(answers, Sequence):
        raise MappingError("answers", "must be a list of integers")
    if len(answers) != len(instrument.items):
        raise MappingError(
            "answers", f"{instrument.key} needs exactly {len(instrument.items)} answers"
        )
    low, high = instrument.min_score, instrument.max_score
    return [_check_score(a, f"answers[{i}]", low, high) for i, a in enumerate(answers)]


def _checked_difficulty(instrument: ScoredInstrument, difficulty: int | None) -> int | None:
    if difficulty is None:
        return None
    if instrument.difficulty is None:
        raise MappingError("difficulty", f"{instrument.key} has no difficulty question")
    scores = [o.score for o in instrument.difficulty.options]
    return _check_score(difficulty, "difficulty", min(scores), max(scores))


def _answer_coding(option: AnswerOption) -> dict[str, Any]:
    result = coding(LOINC, option.code, option.display)
    result["extension"] = [{"url": ORDINAL_VALUE_URL, "valueDecimal": option.score}]
    return result


def _choice_answer_item(item: ChoiceItem, score: int) -> dict[str, Any]:
    option = item.option_for_score(score)
    return {
        "linkId": item.code,
        "text": item.text,
        "answer": [{"valueCoding": _answer_coding(option)}],
    }


def _identifiers(ctx: ReportContext) -> list[dict[str, str]]:
    identifiers = [business_identifier("observation", ctx.report_id)]
    if ctx.app_report_id:
        identifiers.append(app_report_identifier(ctx.client_id, ctx.app_report_id))
    return identifiers


def _common_observation(ctx: ReportContext, code: dict[str, Any]) -> dict[str, Any]:
    """The elements every report Observation shares (without its value)."""
    patient = reference("Patient", ctx.patient_id)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": deterministic_id(ctx.report_id, "observation"),
        "identifier": _identifiers(ctx),
        "status": "final",
        "category": survey_category(),
        "code": code,
        "subject": patient,
        "effectiveDateTime": fhir_datetime(ctx.effective, "effective"),
        "issued": fhir_datetime(ctx.recorded, "recorded"),
        "performer": [patient],
    }
    if ctx.device_name:
        device = " ".join(p for p in (ctx.device_name, ctx.device_version) if p)
        observation["device"] = {"display": device}
    if ctx.note:
        observation["note"] = [{"text": ctx.note}]
    return observation


def map_scored_report(
    ctx: ReportContext,
    instrument: str,
    answers: Sequence[int],
    difficulty: int | None = None,
) -> list[dict[str, Any]]:
    """Map a scored questionnaire to ``[QuestionnaireResponse, Observation]`` (validated).

    The Observation carries the total (valueInteger), the severity band (interpretation), one
    component per item (valueInteger = item score; ``difficulty`` as a coded component) and
    points at the QuestionnaireResponse through ``derivedFrom``. Raises MappingError.
    """
    spec = _scored_instrument(instrument)
    scores = _checked_answers(spec, answers)
    difficulty = _checked_difficulty(spec, difficulty)
    authored = fhir_datetime(ctx.effective, "effective")
    fhir_datetime(ctx.recorded, "recorded")
    total = sum(scores)
    band = severity_band(spec.key, total)
    qr_id = deterministic_id(ctx.report_id, "questionnaire-response")
    patient = reference("Patient", ctx.patient_id)

    qr_items = [_choice_answer_item(item, s) for item, s in zip(spec.items, scores, strict=True)]
    if difficulty is not None and spec.difficulty is not None:
        qr_items.append(_choice_answer_item(spec.difficulty, difficulty))
    qr_items.append(
        {"linkId": spec.total.code, "text": spec.total.display, "answer": [{"valueInteger": total}]}
    )
    questionnaire_response = {
        "resourceType": "QuestionnaireResponse",
        "id": qr_id,
        "identifier": business_identifier("questionnaire-response", ctx.report_id),
        "questionnaire": spec.questionnaire,
        "status": "completed",
        "subject": patient,
        "authored": authored,
        "source": patient,
        "item": qr_items,
    }

    components: list[dict[str, Any]] = [
        {"code": concept(LOINC, item.code, item.text), "valueInteger": score}
        for item, score in zip(spec.items, scores, strict=True)
    ]
    if difficulty is not None and spec.difficulty is not None:
        option = spec.difficulty.option_for_score(difficulty)
        components.append(
            {
                "code": concept(LOINC, spec.difficulty.code, spec.difficulty.text),
                "valueCodeableConcept": {
                    "coding": [_answer_coding(option)],
                    "text": option.display,
                },
            }
        )
    observation = _common_observation(
        ctx, concept(LOINC, spec.total.code, spec.total.display, f"{spec.title} total score")
    )
    observation["valueInteger"] = total
    observation["interpretation"] = [concept(SEVERITY_BAND_SYSTEM, band.code, band.display)]
    observation["derivedFrom"] = [reference("QuestionnaireResponse", qr_id)]
    observation["component"] = components
    return [checked(questionnaire_response), checked(observation)]


def _checked_rating(spec: RatingInstrument, value: float) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MappingError("value", "must be a number")
    if not math.isfinite(value):
        raise MappingError("value", "must be a finite number")
    if not spec.minimum <= value <= spec.maximum:
        raise MappingError("value", f"must be between {spec.minimum:g} and {spec.maximum:g}")
    if spec.integer:
        if not float(value).is_integer():
            raise MappingError("value", "must be a whole number")
        return int(value)
    return value


def map_rating_report(ctx: ReportContext, instrument: str, value: float) -> list[dict[str, Any]]:
    """Map a single self-rating to ``[Observation]`` (validated).

    0..10 ratings become ``valueInteger``; sleep duration a UCUM ``valueQuantity`` in hours.
    Raises MappingError.
    """
    spec = RATING_INSTRUMENTS.get(instrument)
    if spec is None:
        raise MappingError("instrument", "not a known rating instrument")
    rating = _checked_rating(spec, value)
    observation = _common_observation(ctx, concept(spec.system, spec.code, spec.display))
    if spec.integer:
        observation["valueInteger"] = rating
    else:
        observation["valueQuantity"] = {
            "value": rating,
            "unit": spec.unit_display,
            "system": UCUM,
            "code": spec.unit,
        }
    return [checked(observation)]
