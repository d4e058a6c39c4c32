"""The SVG charts: escaped text, coordinates inside the picture, thinned month ticks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from careloop.services.dashboard.charts import WIDTH, Axis, Band, Marker, daily_chart, score_chart

START = datetime(2025, 1, 1, tzinfo=UTC)
BANDS = [Band("minimal", "Minimal", 0, 4), Band("severe", "Severe", 5, 27)]
times = st.integers(-400, 1200).map(lambda d: START + timedelta(days=d))


@given(
    st.lists(st.tuples(times, st.integers(-5, 40).map(float)), max_size=60),
    st.text(max_size=40),
    st.integers(1, 730),
)
def test_charts_stay_inside_and_escape_text(
    points: list[tuple[datetime, float]], label: str, days: int
) -> None:
    axis = Axis(START, START + timedelta(days=days))
    markers = [
        Marker(START, "alert", label, "critical", "/alerts/a-1"),
        Marker(START, "encounter", label),
    ]
    svg = str(score_chart("chart-x", label, axis, sorted(points), 27, BANDS, [9.0], markers))
    svg += str(daily_chart("chart-y", label, axis, sorted(points), 10.0))
    for x in re.findall(r'\b(?:cx|x1|x2)="(-?[\d.]+)"', svg):
        assert 0 <= float(x) <= WIDTH
    assert "<script" not in svg.lower()
    if label:
        assert str(escape(label)) in svg
    assert len(axis.month_ticks()) <= 12


def test_two_years_of_month_ticks_are_thinned() -> None:
    axis = Axis(START, START + timedelta(days=730))
    assert 6 <= len(axis.month_ticks()) <= 12
