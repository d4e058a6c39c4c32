"""The measurement-based care definitions, by example and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from careloop.services.measures.core import (
    GAD7,
    PHQ9,
    Instrument,
    ReliableChange,
    Score,
    Trend,
    is_not_on_track,
    is_remission,
    is_response,
    reliable_change,
    summarise,
    trend,
)

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
instruments = st.sampled_from([PHQ9, GAD7])


def _totals(instrument: Instrument) -> st.SearchStrategy[int]:
    return st.integers(0, instrument.max_total)


@given(st.data())
def test_response_is_exactly_a_drop_of_half_or_more(data: st.DataObject) -> None:
    instrument = data.draw(instruments)
    baseline = data.draw(_totals(instrument))
    latest = data.draw(_totals(instrument))
    if is_response(baseline, latest):
        assert baseline > 0 and (baseline - latest) / baseline >= 0.5
    else:
        assert baseline == 0 or (baseline - latest) / baseline < 0.5


def test_response_at_the_boundary() -> None:
    assert is_response(20, 10) and not is_response(20, 11)
    assert is_response(9, 4) and not is_response(9, 5)  # 4.5 is the half of 9
    assert not is_response(0, 0)


@given(instruments, st.integers(0, 27))
def test_remission_is_below_five(instrument: Instrument, latest: int) -> None:
    assert is_remission(instrument, latest) == (latest < 5)


def test_remission_thresholds_exact_at_four_and_five() -> None:
    for instrument in (PHQ9, GAD7):
        assert is_remission(instrument, 4)
        assert not is_remission(instrument, 5)


@given(st.data())
def test_reliable_change_needs_the_index_in_points(data: st.DataObject) -> None:
    instrument = data.draw(instruments)
    baseline = data.draw(_totals(instrument))
    latest = data.draw(_totals(instrument))
    change = reliable_change(instrument, baseline, latest)
    if change is ReliableChange.IMPROVED:
        assert baseline - latest >= instrument.reliable_change
    elif change is ReliableChange.DETERIORATED:
        assert latest - baseline >= instrument.reliable_change
    else:
        assert abs(latest - baseline) < instrument.reliable_change


def test_reliable_change_indices_are_six_and_four() -> None:
    assert reliable_change(PHQ9, 15, 9) is ReliableChange.IMPROVED
    assert reliable_change(PHQ9, 15, 10) is ReliableChange.NONE
    assert reliable_change(PHQ9, 9, 15) is ReliableChange.DETERIORATED
    assert reliable_change(GAD7, 12, 8) is ReliableChange.IMPROVED
    assert reliable_change(GAD7, 12, 9) is ReliableChange.NONE
    assert reliable_change(GAD7, 8, 12) is ReliableChange.DETERIORATED


@given(st.data(), st.integers(0, 200))
def test_not_on_track_only_after_six_weeks_and_under_a_quarter(
    data: st.DataObject, days: int
) -> None:
    instrument = data.draw(instruments)
    baseline = data.draw(_totals(instrument))
    latest = data.draw(_totals(instrument))
    flagged = is_not_on_track(instrument, baseline, latest, timedelta(days=days))
    if flagged:
        assert days >= 42 and latest >= 5
        assert baseline - latest < 0.25 * baseline
    elif days >= 42 and latest >= 5:
        assert baseline - latest >= 0.25 * baseline


def test_not_on_track_boundaries() -> None:
    six_weeks = timedelta(weeks=6)
    assert is_not_on_track(PHQ9, 20, 16, six_weeks)  # 20% better
    assert not is_not_on_track(PHQ9, 20, 15, six_weeks)  # 25% better
    assert not is_not_on_track(PHQ9, 20, 20, six_weeks - timedelta(seconds=1))
    assert not is_not_on_track(PHQ9, 4, 4, six_weeks * 3)  # in remission


@given(st.integers(0, 27) | st.none(), st.integers(0, 27) | st.none())
def test_trend_follows_the_previous_score(previous: int | None, latest: int | None) -> None:
    got = trend(previous, latest)
    if previous is None or latest is None:
        assert got is None
    else:
        expected = Trend.FLAT
        if latest != previous:
            expected = Trend.UP if latest > previous else Trend.DOWN
        assert got is expected


@given(st.lists(st.integers(0, 27), min_size=1, max_size=30))
def test_summary_is_consistent_with_its_parts(totals: list[int]) -> None:
    scores = [Score(T0 + timedelta(weeks=i), t) for i, t in enumerate(totals)]
    summary = summarise(PHQ9, scores[0], scores[-2:])
    assert summary.latest == scores[-1] and summary.baseline == scores[0]
    assert summary.change == totals[-1] - totals[0]
    assert summary.response == is_response(totals[0], totals[-1])
    assert summary.remission == (totals[-1] < 5)
    assert summary.weeks_in_treatment == len(totals) - 1
    if summary.response:
        assert summary.improvement is not None and summary.improvement >= 0.5


def test_treatment_counts_from_the_care_plan_start() -> None:
    scores = [Score(T0, 20), Score(T0 + timedelta(weeks=2), 19)]
    early = summarise(PHQ9, scores[0], scores)
    assert early.not_on_track is False and early.weeks_in_treatment == 2
    late = summarise(PHQ9, scores[0], scores, treatment_start=T0 - timedelta(weeks=5))
    assert late.not_on_track is True and late.weeks_in_treatment == 7


def test_without_scores_nothing_is_judged() -> None:
    summary = summarise(GAD7, None, [])
    assert summary.latest is None and summary.response is None and summary.trend is None


def test_methods_name_the_published_index() -> None:
    assert "Jacobson & Truax 1991" in PHQ9.method and "6 points" in PHQ9.method
    assert "4 points" in GAD7.method and "NHS Talking Therapies" in GAD7.method
