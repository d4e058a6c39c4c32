"""Measurement-based care over one instrument's score series: pure functions, no I/O.

Definitions (lower scores are better on both instruments):

- **baseline**: the first score of the treatment episode (on or after the start of the patient's
  active CarePlan; without one, the patient's first score);
- **response**: a drop of at least 50% from a baseline above 0;
- **remission**: the latest total below 5 (PHQ-9 < 5, GAD-7 < 5);
- **reliable change**: a change from baseline at least as large as the instrument's reliable
  change index: 6 points on the PHQ-9 and 4 on the GAD-7. These are the reliable change criteria
  of the NHS Talking Therapies (formerly IAPT) programme, derived with the reliable change index of
  Jacobson & Truax (1991): Jacobson NS, Truax P. "Clinical significance: a statistical approach to
  defining meaningful change in psychotherapy research." J Consult Clin Psychol 1991;59(1):12-19;
  NHS England, "NHS Talking Therapies for anxiety and depression manual" (v7, 2024), section on
  reliable improvement and recovery;
- **not on track**: after at least 6 weeks of treatment, an improvement of less than 25% from
  baseline (a patient in remission is on track whatever their baseline);
- **trend**: the latest score against the one before (up = worse, down = better, flat).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

RESPONSE_DROP = 0.5
NOT_ON_TRACK_IMPROVEMENT = 0.25
NOT_ON_TRACK_AFTER = timedelta(weeks=6)
REMISSION_BELOW = 5


class Trend(StrEnum):
    """The latest score against the previous one (for PHQ-9 and GAD-7, up is worse)."""

    UP = "up"
    DOWN = "down"
    FLAT = "flat"


class ReliableChange(StrEnum):
    """Whether the change from baseline reaches the reliable change index, and which way."""

    IMPROVED = "improved"
    DETERIORATED = "deteriorated"
    NONE = "none"


@dataclass(frozen=True)
class Instrument:
    """A scored instrument as measurement-based care judges it."""

    key: str
    title: str
    code: str
    """LOINC code of the total score Observation."""
    max_total: int
    reliable_change: int
    """Points of change that count as reliable (the reliable change index)."""
    remission_below: int = REMISSION_BELOW

    @property
    def method(self) -> str:
        """The definitions used, in words (shown with every judgement)."""
        return (
            f"Baseline: first {self.title} of the treatment episode (from the CarePlan's start, "
            f"else the first score). Response: a drop of 50% or more from baseline. Remission: "
            f"{self.title} below {self.remission_below}. Reliable change: {self.reliable_change} "
            f"points or more (NHS Talking Therapies criteria, reliable change index of Jacobson "
            f"& Truax 1991). Not on track: under 25% improvement after 6 weeks or more of "
            f"treatment."
        )


PHQ9 = Instrument("phq-9", "PHQ-9", "44261-6", 27, 6)
GAD7 = Instrument("gad-7", "GAD-7", "70274-6", 21, 4)
INSTRUMENTS: dict[str, Instrument] = {PHQ9.key: PHQ9, GAD7.key: GAD7}


@dataclass(frozen=True)
class Score:
    """One total score at one time."""

    when: datetime
    total: int


@dataclass(frozen=True)
class Summary:
    """Measurement-based care judgements of one instrument for one patient."""

    instrument: Instrument
    baseline: Score | None
    latest: Score | None
    previous: Score | None
    change: int | None
    """Latest minus baseline (negative is improvement)."""
    improvement: float | None
    """The fraction of the baseline improved by (0.5 = halved); None for a baseline of 0."""
    response: bool | None
    remission: bool | None
    reliable_change: ReliableChange | None
    not_on_track: bool | None
    trend: Trend | None
    weeks_in_treatment: float | None


def improvement(baseline: int, latest: int) -> float | None:
    """The fraction of ``baseline`` that ``latest`` improved by; None when baseline is 0."""
    if baseline <= 0:
        return None
    return (baseline - latest) / baseline


def is_response(baseline: int, latest: int) -> bool:
    """A drop of at least 50% from a baseline above 0."""
    return baseline > 0 and 2 * (baseline - latest) >= baseline


def is_remission(instrument: Instrument, latest: int) -> bool:
    """The latest total below the instrument's remission threshold (5)."""
    return latest < instrument.remission_below


def reliable_change(instrument: Instrument, baseline: int, latest: int) -> ReliableChange:
    """Whether ``latest`` differs from ``baseline`` by the reliable change index, and which way."""
    if baseline - latest >= instrument.reliable_change:
        return ReliableChange.IMPROVED
    if latest - baseline >= instrument.reliable_change:
        return ReliableChange.DETERIORATED
    return ReliableChange.NONE


def is_not_on_track(
    instrument: Instrument, baseline: int, latest: int, in_treatment: timedelta
) -> bool:
    """Under 25% improvement after at least 6 weeks of treatment (never when in remission)."""
    if in_treatment < NOT_ON_TRACK_AFTER or is_remission(instrument, latest):
        return False
    # 4 * (baseline - latest) < baseline is "improved by under 25%", exactly, in integers.
    return 4 * (baseline - latest) < baseline


def trend(previous: int | None, latest: int | None) -> Trend | None:
    """``latest`` against ``previous``: up, down or flat; None without both."""
    if previous is None or latest is None:
        return None
    if latest > previous:
        return Trend.UP
    if latest < previous:
        return Trend.DOWN
    return Trend.FLAT


def summarise(
    instrument: Instrument,
    baseline: Score | None,
    recent: list[Score],
    treatment_start: datetime | None = None,
) -> Summary:
    """The judgements for the ``recent`` scores (oldest first; the last two suffice) against
    ``baseline``; without a baseline only latest, previous and trend are given.

    ``treatment_start`` is the CarePlan's start; without it treatment is counted from the baseline.
    """
    latest = recent[-1] if recent else None
    previous = recent[-2] if len(recent) > 1 else None
    direction = trend(previous.total if previous else None, latest.total if latest else None)
    if baseline is None or latest is None:
        return Summary(
            instrument, None, latest, previous, None, None, None, None, None, None, direction, None
        )
    start = treatment_start or baseline.when
    in_treatment = max(latest.when - start, timedelta(0))
    return Summary(
        instrument=instrument,
        baseline=baseline,
        latest=latest,
        previous=previous,
        change=latest.total - baseline.total,
        improvement=improvement(baseline.total, latest.total),
        response=is_response(baseline.total, latest.total),
        remission=is_remission(instrument, latest.total),
        reliable_change=reliable_change(instrument, baseline.total, latest.total),
        not_on_track=is_not_on_track(instrument, baseline.total, latest.total, in_treatment),
        trend=direction,
        weeks_in_treatment=round(in_treatment.total_seconds() / (7 * 86400), 1),
    )
