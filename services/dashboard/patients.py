"""The clinician's caseload (``/caseload``) and one patient's page (``/patients/{id}``).

Both are tenant-scoped by the signed-in session; an unknown patient, or another tenant's, is a
404 page. An EHR launch (``signed.patient_id``) lands on its patient's page. A patient who has not
consented to care-team alerts is left off the caseload's ranking and their page is a 403 notice
(services/dashboard/consent.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import HTMLResponse, Response

from careloop.fhir.terminology import PHQ9_ITEM9_CODE, RATING_INSTRUMENTS, SCORED_INSTRUMENTS
from careloop.services.clinicians.sessions import SignedIn, SignedInDep
from careloop.services.dashboard.caseload import SHOW_ALL, SHOW_MINE, load_caseload
from careloop.services.dashboard.charts import Axis, Band, Marker, daily_chart, score_chart
from careloop.services.dashboard.consent import dashboard_consent, withheld_page
from careloop.services.dashboard.group_attendance import group_attendance
from careloop.services.dashboard.patient_view import PatientView, alert_title, load_view
from careloop.services.dashboard.templating import render
from careloop.services.db import utcnow
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.measures.core import INSTRUMENTS
from careloop.services.measures.series import Reading, first_observation_since, patient_exists
from careloop.services.patients.labels import patient_label

router = APIRouter(include_in_schema=False)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MONTHS = (1, 3, 6, 12, 24)
DEFAULT_MONTHS = 12
"""Without data in the last 24 months (or a chosen period), the page shows a year."""
_MONTH = timedelta(days=30.44)


def fitted_months(first: datetime | None, now: datetime) -> int:
    """The shortest period of at least 3 months that shows everything since ``first``."""
    if first is None:
        return DEFAULT_MONTHS
    return next((m for m in MONTHS if m >= 3 and now - first <= m * _MONTH), MONTHS[-1])


_TESTIDS = {"phq-9": "chart-phq9", "gad-7": "chart-gad7"}
_DAILY = {
    "mood": ("chart-mood", "Mood (0 very low - 10 very good)", 10.0, ""),
    "sleep-duration": ("chart-sleep", "Sleep (hours)", 12.0, " h"),
    "sleep-quality": (
        "chart-sleep-quality",
        "Sleep quality (0 very poor - 10 excellent)",
        10.0,
        "",
    ),
}


@dataclass(frozen=True)
class ChartBlock:
    """One chart and the numbers behind it."""

    testid: str
    title: str
    svg: Markup
    unit: str
    rows: list[tuple[datetime, float]]


def _problem(
    request: Request, signed: SignedIn | None, status: int, title: str, message: str
) -> HTMLResponse:
    return render(
        request, "message.html", signed, status=status, title=title, message=message, active=""
    )


def _not_found(request: Request, signed: SignedIn) -> HTMLResponse:
    return _problem(request, signed, 404, "Patient not found", "There is no such patient here.")


def _points(found: list[Reading]) -> list[tuple[datetime, float]]:
    return [(r.when, r.value) for r in found if r.value is not None]


def _charts(view: PatientView) -> tuple[list[ChartBlock], list[ChartBlock]]:
    axis = Axis(view.start, view.end)
    markers = [Marker(e.when, "encounter", e.text) for e in view.encounters]
    markers += [
        Marker(a.opened_at, "alert", alert_title(a), a.severity, f"/alerts/{a.id}")
        for a in view.alerts
        if a.opened_at >= view.start
    ]
    scores = []
    for key, instrument in INSTRUMENTS.items():
        spec = SCORED_INSTRUMENTS[key]
        points = _points(view.scores.get(key, []))
        bands = [Band(b.code, b.display, b.low, b.high) for b in spec.bands]
        goals = view.goals.get(instrument.code, [])
        title = f"{instrument.title} total over time"
        svg = score_chart(_TESTIDS[key], title, axis, points, spec.max_total, bands, goals, markers)
        scores.append(ChartBlock(_TESTIDS[key], title, svg, "", points))
    daily = []
    for key, (testid, title, y_max, unit) in _DAILY.items():
        points = _points(view.daily.get(key, []))
        if points or key != "sleep-quality":
            svg = daily_chart(testid, title, axis, points, y_max, unit)
            daily.append(ChartBlock(testid, title, svg, unit, points))
    return scores, daily


def _item_table(view: PatientView) -> dict[str, Any]:
    items = SCORED_INSTRUMENTS["phq-9"].items
    rows = []
    for reading in view.item_rows:
        scores = [reading.components.get(item.code) for item in items]
        rows.append(
            {
                "when": reading.when,
                "items": [None if s is None else int(s) for s in scores],
                "total": None if reading.value is None else int(reading.value),
                "item9": int(reading.components.get(PHQ9_ITEM9_CODE, 0)),
            }
        )
    return {"items": [(i + 1, item.text) for i, item in enumerate(items)], "rows": rows}


@router.get("/patients/{patient_id}")
def patient_page(
    request: Request,
    patient_id: str,
    signed: SignedInDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """The patient's page: charts, measurement-based care, items, alerts, group sessions.

    A 403 notice with nothing but the patient id (audited) when their consent withholds them.
    """
    if not _FHIR_ID.fullmatch(patient_id):
        return _not_found(request, signed)
    months_text = request.query_params.get("months")
    if months_text is not None and months_text not in {str(m) for m in MONTHS}:
        return _problem(
            request, signed, 400, "Not a period", "The period must be 1, 3, 6, 12 or 24 months."
        )
    if not patient_exists(session, signed.tenant_id, patient_id):
        return _not_found(request, signed)
    if dashboard_consent(session, settings, signed).refused(session, patient_id):
        return withheld_page(request, signed, patient_id, "caseload")
    now = utcnow()
    if months_text is None:
        since = now - MONTHS[-1] * _MONTH
        first = first_observation_since(session, signed.tenant_id, patient_id, since)
        months = fitted_months(first, now)
    else:
        months = int(months_text)
    view = load_view(session, signed.tenant_id, patient_id, now, months)
    scores, daily = _charts(view)
    return render(
        request,
        "patient.html",
        signed,
        active="caseload",
        patient_id=patient_id,
        label=patient_label(session, signed.tenant_id, patient_id),
        launched=signed.patient_id == patient_id,
        view=view,
        months=months,
        month_options=MONTHS,
        score_charts=scores,
        daily_charts=daily,
        table=_item_table(view),
        summaries=list(view.summaries.values()),
        open_alerts=[(a, alert_title(a)) for a in view.open_alerts],
        history=[(a, alert_title(a)) for a in view.alerts],
        rating_titles={k: v.display for k, v in RATING_INSTRUMENTS.items()},
        group_sessions=group_attendance(session, signed.tenant_id, patient_id),
    )


@router.get("/caseload")
def caseload_page(
    request: Request, signed: SignedInDep, session: SessionDep, settings: SettingsDep
) -> HTMLResponse:
    """The clinician's patients, who needs attention first (those who withhold consent apart)."""
    show = request.query_params.get("show", "")
    if show not in ("", SHOW_MINE, SHOW_ALL):
        return _problem(request, signed, 400, "Not a filter", "Show either mine or all.")
    consent = dashboard_consent(session, settings, signed)
    caseload = load_caseload(
        session, signed.tenant_id, signed.practitioner, show or None, utcnow(), consent.withheld
    )
    return render(request, "caseload.html", signed, active="caseload", caseload=caseload)
