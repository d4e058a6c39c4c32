"""The clinician's inbox (``/inbox``) and alert page (``/alerts/{id}``), acknowledge and resolve.

Pages answer in HTML, errors included: a bad filter is a 400 page, an alert that is unknown or
another tenant's a 404 page, a form without this session's CSRF token a 403 page, an alert of a
patient who has not consented to care-team alerts a 403 notice (services/dashboard/consent.py).
Notes are the clinician's free text: stored on the alert, shown on its page, never logged.
"""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlmodel import col, select
from starlette.responses import RedirectResponse, Response

from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import acknowledge, resolve
from careloop.services.alerts.vocabulary import AlertStatus
from careloop.services.clinicians.sessions import SignedIn, SignedInDep, csrf_ok
from careloop.services.common.errors import ApiError
from careloop.services.common.forms import BadForm, form_fields
from careloop.services.dashboard.alert_view import WithheldAlert, alert_detail, valid_alert_id
from careloop.services.dashboard.consent import dashboard_consent, withheld_page
from careloop.services.dashboard.inbox_view import (
    SEVERITIES,
    STATUSES,
    BadFilter,
    InboxFilters,
    inbox_page,
    parse_filters,
)
from careloop.services.dashboard.templating import render
from careloop.services.db import utcnow
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.unit_of_work import commit

router = APIRouter(include_in_schema=False)
FormDep = Annotated[dict[str, str] | BadForm, Depends(form_fields)]
MAX_NOTE = 4000
FLASHES = {
    "acknowledged": "Alert acknowledged: escalation has stopped.",
    "resolved": "Alert resolved.",
    "already-acknowledged": "The alert was already acknowledged.",
}
"""The only messages ``?done=`` shows (the query names one, it never carries text)."""


def _message(request: Request, signed: SignedIn, status: int, title: str, message: str) -> Response:
    return render(
        request,
        "message.html",
        signed,
        status=status,
        title=title,
        message=message,
        active="inbox",
    )


def _not_found(request: Request, signed: SignedIn) -> Response:
    return _message(request, signed, 404, "Alert not found", "There is no such alert here.")


@router.get("/inbox")
def inbox(
    request: Request, signed: SignedInDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """The tenant's alerts: open first by severity then age, then acknowledged, then resolved.

    Alerts of patients whose consent withholds them from the care team are left out.
    """
    query = {name: request.query_params.getlist(name) for name in request.query_params}
    try:
        filters = parse_filters(query)
    except BadFilter as exc:
        return _message(
            request, signed, 400, "Filter not understood", f"The {exc.name} filter {exc.message}."
        )
    consent = dashboard_consent(session, settings, signed)
    page = inbox_page(session, signed.tenant_id, filters, utcnow(), consent.withheld)
    return render(
        request,
        "inbox.html",
        signed,
        active="inbox",
        page=page,
        filters=filters,
        severities=SEVERITIES,
        statuses=STATUSES,
        unfiltered=InboxFilters(),
    )


@router.get("/alerts/{alert_id}")
def alert_page(
    request: Request,
    alert_id: str,
    signed: SignedInDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """One alert: why it fired, the reading, escalation, notifications, history and the forms.

    A 403 notice (audited) instead when the patient's consent withholds it from the care team.
    """
    consent = dashboard_consent(session, settings, signed)
    refused = functools.partial(consent.refused, session)
    detail = alert_detail(session, signed.tenant_id, alert_id, utcnow(), refused)
    if detail is None:
        return _not_found(request, signed)
    if isinstance(detail, WithheldAlert):
        return withheld_page(request, signed, detail.patient_id, "inbox")
    flash = FLASHES.get(request.query_params.get("done", ""))
    return render(request, "alert.html", signed, active="inbox", detail=detail, flash=flash)


def _checked_note(form: dict[str, str]) -> str | None | BadForm:
    note = form.get("note", "").strip()
    if len(note) > MAX_NOTE:
        return BadForm("note", f"is longer than {MAX_NOTE} characters")
    return note or None


def _act(
    request: Request,
    alert_id: str,
    signed: SignedIn,
    session: SessionDep,
    settings: SettingsDep,
    form: dict[str, str] | BadForm,
    action: str,
) -> Response:
    if not valid_alert_id(alert_id):
        return _not_found(request, signed)
    if isinstance(form, BadForm):
        return _message(
            request, signed, 400, "Form not understood", f"The {form.field} {form.message}."
        )
    if not csrf_ok(signed, form.get("csrf_token")):
        return _message(
            request,
            signed,
            403,
            "Form expired",
            "This form is not from your current session. Reload the alert and try again.",
        )
    note = _checked_note(form)
    if isinstance(note, BadForm):
        return _message(request, signed, 400, "Note too long", f"The {note.field} {note.message}.")
    alert = session.exec(
        select(Alert).where(col(Alert.id) == alert_id, col(Alert.tenant_id) == signed.tenant_id)
    ).first()
    if alert is None:
        return _not_found(request, signed)
    if dashboard_consent(session, settings, signed).refused(session, alert.patient_id):
        return withheld_page(request, signed, alert.patient_id, "inbox")
    if alert.status == AlertStatus.RESOLVED:
        return _message(
            request,
            signed,
            409,
            "Already resolved",
            "This alert was resolved already; nothing changed.",
        )
    done = action
    try:
        if action == "acknowledged":
            if alert.status == AlertStatus.ACKNOWLEDGED:
                done = "already-acknowledged"
            acknowledge(session, signed.tenant_id, alert_id, signed.actor, note=note)
        else:
            resolve(session, signed.tenant_id, alert_id, signed.actor, note)
        commit(session)
    except ApiError as exc:
        if exc.status == 404:
            return _not_found(request, signed)
        return _message(
            request,
            signed,
            409,
            "Not changed",
            "The alert changed meanwhile; nothing was recorded.",
        )
    return RedirectResponse(f"/alerts/{alert_id}?done={done}", status_code=303)


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge_alert(
    request: Request,
    alert_id: str,
    signed: SignedInDep,
    session: SessionDep,
    settings: SettingsDep,
    form: FormDep,
) -> Response:
    """Acknowledge with an optional note (CSRF-checked), then back to the alert page."""
    return _act(request, alert_id, signed, session, settings, form, "acknowledged")


@router.post("/alerts/{alert_id}/resolve")
def resolve_alert(
    request: Request,
    alert_id: str,
    signed: SignedInDep,
    session: SessionDep,
    settings: SettingsDep,
    form: FormDep,
) -> Response:
    """Resolve with an optional note (CSRF-checked), then back to the alert page."""
    return _act(request, alert_id, signed, session, settings, form, "resolved")
