"""A patient's measurement-based care summary: three small queries per instrument."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from careloop.services.common.fhirtime import format_instant
from careloop.services.measures.core import INSTRUMENTS, Instrument, Score, Summary, summarise
from careloop.services.measures.series import Reading, patient_resources, readings, treatment_start


def score_of(reading: Reading) -> Score | None:
    """The total score of a reading, or None without a numeric value."""
    if reading.value is None:
        return None
    return Score(reading.when, int(reading.value))


def _scores(found: list[Reading]) -> list[Score]:
    return [s for s in (score_of(r) for r in found) if s is not None]


def instrument_summary(
    session: Session,
    tenant_id: str,
    patient_id: str,
    instrument: Instrument,
    start: datetime | None,
) -> Summary:
    """The summary of one instrument: the baseline (one row) and the latest two scores."""
    first = _scores(
        readings(session, tenant_id, patient_id, instrument.code, since=start, limit=1, oldest=True)
    )
    recent = _scores(readings(session, tenant_id, patient_id, instrument.code, limit=2))
    return summarise(instrument, first[0] if first else None, recent, start)


def patient_summaries(session: Session, tenant_id: str, patient_id: str) -> dict[str, Summary]:
    """PHQ-9 and GAD-7 summaries of the patient (by instrument key)."""
    start = treatment_start(patient_resources(session, tenant_id, "CarePlan", patient_id))
    return {
        key: instrument_summary(session, tenant_id, patient_id, instrument, start)
        for key, instrument in INSTRUMENTS.items()
    }


def _score_json(score: Score | None) -> dict[str, Any] | None:
    if score is None:
        return None
    return {"value": score.total, "effective": format_instant(score.when)}


def summary_json(summary: Summary) -> dict[str, Any]:
    """The summary as the API answers it."""
    instrument = summary.instrument
    return {
        "instrument": instrument.key,
        "code": {"system": "http://loinc.org", "code": instrument.code},
        "baseline": _score_json(summary.baseline),
        "latest": _score_json(summary.latest),
        "previous": _score_json(summary.previous),
        "change": summary.change,
        "improvement": None if summary.improvement is None else round(summary.improvement, 3),
        "response": summary.response,
        "remission": summary.remission,
        "reliable_change": summary.reliable_change,
        "not_on_track": summary.not_on_track,
        "trend": summary.trend,
        "weeks_in_treatment": summary.weeks_in_treatment,
        "method": {
            "text": instrument.method,
            "response_drop": 0.5,
            "remission_below": instrument.remission_below,
            "reliable_change_points": instrument.reliable_change,
            "reliable_change_index": "Jacobson & Truax 1991, NHS Talking Therapies criteria",
            "not_on_track": "under 25% improvement after 6 or more weeks of treatment",
        },
    }
