"""Server-rendered SVG line charts for the patient page: no script, no inline style.

Colours come from ``static/charts.css`` (classes) with presentation attributes as the fallback,
so the charts obey a ``default-src 'self'`` CSP. Every chart is an ``img`` with a ``<title>`` and
``<desc>``; the page puts the numbers beside it in a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH = 760
LEFT, RIGHT, TOP, BOTTOM = 40, 215, 26, 28
"""Margins: y labels left, band names right, markers on top, month labels below."""
_BAND_FILLS = ("#e7f4ea", "#fbf5d6", "#fde9cf", "#fbd9cc", "#f6c9cf")


@dataclass(frozen=True)
class Band:
    """A shaded score range (inclusive) with its name."""

    code: str
    display: str
    low: int
    high: int


@dataclass(frozen=True)
class Marker:
    """A telehealth session or an alert on the time axis."""

    when: datetime
    kind: str
    """``encounter`` or ``alert``."""
    label: str
    severity: str = ""
    href: str | None = None


@dataclass(frozen=True)
class Axis:
    """The shared time axis of one page's charts."""

    start: datetime
    end: datetime

    def x(self, when: datetime) -> float:
        """The x coordinate of ``when`` (clamped to the plot)."""
        span = (self.end - self.start).total_seconds() or 1.0
        fraction = (when - self.start).total_seconds() / span
        return LEFT + max(0.0, min(1.0, fraction)) * (WIDTH - LEFT - RIGHT)

    def month_ticks(self) -> list[datetime]:
        """First days of months inside the axis, thinned to at most 8 (labels must not touch)."""
        ticks = []
        year, month = self.start.year, self.start.month
        while True:
            month += 1
            if month > 12:
                year, month = year + 1, 1
            tick = datetime(year, month, 1, tzinfo=UTC)
            if tick > self.end:
                break
            ticks.append(tick)
        step = max(1, -(-len(ticks) // 8))
        return ticks[::step]


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class _Plot:
    def __init__(self, axis: Axis, height: int, y_max: float) -> None:
        self.axis, self.height, self.y_max = axis, height, y_max
        self.parts: list[str] = []

    def y(self, value: float) -> float:
        inner = self.height - TOP - BOTTOM
        return TOP + inner * (1 - max(0.0, min(value, self.y_max)) / self.y_max)

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def frame(self, y_ticks: Sequence[float]) -> None:
        right = WIDTH - RIGHT
        for value in y_ticks:
            y = _num(self.y(value))
            self.add(
                f'<line class="grid" x1="{LEFT}" x2="{right}" y1="{y}" y2="{y}" '
                f'stroke="#d0d0d0" stroke-width="0.5"/>'
                f'<text class="tick" x="{LEFT - 6}" y="{y}" text-anchor="end" '
                f'dominant-baseline="middle" font-size="11" fill="#4a4a4a">{_num(value)}</text>'
            )
        base = _num(self.y(0))
        for index, tick in enumerate(self.axis.month_ticks()):
            x = _num(self.axis.x(tick))
            label = f"{tick:%b %Y}" if index == 0 or tick.month == 1 else f"{tick:%b}"
            self.add(
                f'<line class="grid" x1="{x}" x2="{x}" y1="{TOP}" y2="{base}" '
                f'stroke="#e2e2e2" stroke-width="0.5"/>'
                f'<text class="tick" x="{x}" y="{self.height - 10}" text-anchor="middle" '
                f'font-size="11" fill="#4a4a4a">{label}</text>'
            )

    def line(self, points: Sequence[tuple[datetime, float]], dots: bool) -> None:
        if not points:
            return
        coords = " ".join(f"{_num(self.axis.x(t))},{_num(self.y(v))}" for t, v in points)
        self.add(
            f'<polyline class="series" points="{coords}" fill="none" stroke="#12263f" '
            f'stroke-width="2"/>'
        )
        if dots:
            for when, value in points:
                self.add(
                    f'<circle class="point" cx="{_num(self.axis.x(when))}" '
                    f'cy="{_num(self.y(value))}" r="3.5" fill="#12263f">'
                    f"<title>{_num(value)} on {when:%Y-%m-%d}</title></circle>"
                )

    def svg(self, testid: str, title: str, desc: str) -> Markup:
        ident = escape(testid)
        head = (
            f'<svg class="chart" data-testid="{ident}" role="img" '
            f'viewBox="0 0 {WIDTH} {self.height}" width="100%" '
            f'aria-labelledby="{ident}-title {ident}-desc" xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{ident}-title">{escape(title)}</title>'
            f'<desc id="{ident}-desc">{escape(desc)}</desc>'
        )
        return Markup(head + "".join(self.parts) + "</svg>")


def _markers(plot: _Plot, markers: Sequence[Marker]) -> None:
    for marker in markers:
        x = _num(plot.axis.x(marker.when))
        label = escape(f"{marker.label} on {marker.when:%Y-%m-%d}")
        if marker.kind == "encounter":
            plot.add(
                f'<g class="marker encounter" data-testid="encounter-marker">'
                f'<line x1="{x}" x2="{x}" y1="{TOP - 4}" y2="{_num(plot.y(0))}" stroke="#0b5cad" '
                f'stroke-width="1" stroke-dasharray="2 3"/>'
                f'<rect x="{_num(float(x) - 4)}" y="{TOP - 12}" width="8" height="8" '
                f'fill="#0b5cad"><title>{label}</title></rect></g>'
            )
        else:
            severity = escape(marker.severity)
            tip = float(x)
            shape = (
                f'<polygon class="sev-{severity}" points="{_num(tip - 5)},{TOP - 3} '
                f'{_num(tip + 5)},{TOP - 3} {_num(tip)},{TOP - 13}" fill="#a4001d">'
                f"<title>{label}</title></polygon>"
            )
            if marker.href:
                shape = f'<a href="{escape(marker.href)}">{shape}</a>'
            plot.add(f'<g class="marker alert" data-testid="alert-marker">{shape}</g>')


def score_chart(
    testid: str,
    title: str,
    axis: Axis,
    points: Sequence[tuple[datetime, float]],
    max_total: int,
    bands: Sequence[Band],
    goals: Sequence[float] = (),
    markers: Sequence[Marker] = (),
) -> Markup:
    """A score over time on its severity bands, with goal lines and session/alert markers."""
    plot = _Plot(axis, 250, float(max_total))
    right = WIDTH - RIGHT
    for index, band in enumerate(bands):
        top = plot.y(min(band.high + 1, max_total))
        bottom = plot.y(band.low)
        fill = _BAND_FILLS[min(index, len(_BAND_FILLS) - 1)]
        plot.add(
            f'<g class="band band-{index}" data-band="{escape(band.code)}">'
            f'<rect x="{LEFT}" y="{_num(top)}" width="{right - LEFT}" '
            f'height="{_num(bottom - top)}" fill="{fill}"/>'
            f'<text x="{right + 6}" y="{_num((top + bottom) / 2)}" dominant-baseline="middle" '
            f'font-size="11" fill="#1a1a1a">{escape(band.display)} '
            f"{band.low}-{band.high}</text></g>"
        )
    plot.frame([b.low for b in bands] + [max_total])
    for goal in goals:
        y = _num(plot.y(goal))
        plot.add(
            f'<line class="goal" data-testid="goal-line" x1="{LEFT}" x2="{right}" y1="{y}" '
            f'y2="{y}" stroke="#1e6b2f" stroke-width="2" stroke-dasharray="6 4">'
            f"<title>Goal: at or below {_num(goal)}</title></line>"
        )
    plot.line(points, dots=True)
    _markers(plot, markers)
    desc = _describe(title, points, goals, markers)
    return plot.svg(testid, title, desc)


def daily_chart(
    testid: str,
    title: str,
    axis: Axis,
    points: Sequence[tuple[datetime, float]],
    y_max: float,
    unit: str = "",
) -> Markup:
    """A daily self-rating (mood, sleep) under the score charts, on the same time axis."""
    plot = _Plot(axis, 140, y_max)
    plot.frame([0, y_max / 2, y_max])
    plot.line(points, dots=False)
    desc = _describe(title, points, (), (), unit)
    return plot.svg(testid, title, desc)


def _describe(
    title: str,
    points: Sequence[tuple[datetime, float]],
    goals: Sequence[float],
    markers: Sequence[Marker],
    unit: str = "",
) -> str:
    if not points:
        return f"{title}: no reports in this period."
    values = [v for _, v in points]
    first, last = points[0], points[-1]
    text = (
        f"{title}: {len(points)} reports from {first[0]:%Y-%m-%d} to {last[0]:%Y-%m-%d}; "
        f"first {_num(first[1])}{unit}, latest {_num(last[1])}{unit}, lowest {_num(min(values))}"
        f"{unit}, highest {_num(max(values))}{unit}."
    )
    if goals:
        text += " Goal at or below " + ", ".join(_num(g) for g in goals) + "."
    sessions = sum(1 for m in markers if m.kind == "encounter")
    alerts = sum(1 for m in markers if m.kind == "alert")
    if sessions or alerts:
        text += f" {sessions} telehealth sessions and {alerts} alerts marked."
    return text
