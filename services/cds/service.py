"""CDS Hooks behind the endpoints: which careloop patient the EHR means, its cards, feedback."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from sqlmodel import Session, col, select

from careloop.integrations.egress import (
    CARE_TEAM_ALERTS,
    DEFAULT_POLICY,
    Decision,
    Disclosure,
    EgressBlocked,
    destination_label,
)
from careloop.services.alerts.models import Alert, AlertEvent
from careloop.services.alerts.service import acknowledge
from careloop.services.alerts.vocabulary import AlertEventKind, AlertStatus
from careloop.services.audit.egress_guard import session_guard
from careloop.services.cds.auth import CdsCaller
from careloop.services.cds.cards import ACKNOWLEDGE, cards_for, suggestion_uuid
from careloop.services.cds.schemas import CdsFeedback, CdsHookRequest, bare_uuid
from careloop.services.cds.scores import latest_scores
from careloop.services.common.errors import ApiError
from careloop.services.ehr.models import PatientLink
from careloop.services.ehr.vocabulary import LinkState
from careloop.services.patients.service import find_patients
from careloop.services.unit_of_work import commit

SERVICE_ID = "careloop-patient-view"
MAX_ALERT_CARDS = 20
log = logging.getLogger("careloop.cds")


def discovery() -> dict[str, Any]:
    """The discovery document: careloop's one ``patient-view`` service."""
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": SERVICE_ID,
                "title": "careloop: patient-reported symptoms and alerts",
                "description": (
                    "Open careloop alerts (PHQ-9 item 9, worsening scores, low mood) and the "
                    "latest PHQ-9 and GAD-7 with their trend, for the patient in view."
                ),
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
            }
        ]
    }


def resolve_patient(session: Session, caller: CdsCaller, request: CdsHookRequest) -> str | None:
    """careloop's patient for the EHR's ``context.patientId``, or None: never guessed.

    First the EHR connection's patient links (linked only), then the identifiers of the
    prefetched Patient (only if it is that same patient) when all that match name one patient.
    """
    ehr_patient_id = request.context.patientId
    if caller.connection_id is not None:
        link = session.exec(
            select(PatientLink.patient_id).where(
                PatientLink.connection_id == caller.connection_id,
                PatientLink.ehr_patient_id == ehr_patient_id,
                PatientLink.state == LinkState.LINKED,
            )
        ).first()
        if link is not None:
            return link
    patient = request.prefetch.patient if request.prefetch else None
    if patient is None or (patient.id is not None and patient.id != ehr_patient_id):
        return None
    idents = [(i.system, i.value) for i in patient.identifier if i.system and i.value]
    found = set(find_patients(session, caller.tenant_id, idents).values()) if idents else set()
    return found.pop() if len(found) == 1 else None


def patient_cards(
    session: Session,
    caller: CdsCaller,
    request: CdsHookRequest,
    base_url: str,
    consent_defaults: Mapping[str, Decision] = DEFAULT_POLICY,
) -> dict[str, Any]:
    """The ``{"cards": [...]}`` answer for a ``patient-view`` call.

    Cards carry careloop's alerts to the care team in the EHR: none unless the patient's
    consent (or the tenant policy, ``consent_defaults``) permits care-team alerts.
    """
    patient_id = resolve_patient(session, caller, request)
    if patient_id is None:
        return {"cards": []}
    guard = session_guard(session, caller.tenant_id, caller.actor, consent_defaults)
    try:
        guard.require_consent(
            Disclosure(patient_id, purpose=CARE_TEAM_ALERTS), destination_label("cds", caller.iss)
        )
    except EgressBlocked:
        commit(session)  # the refusal stays audited
        return {"cards": []}
    alerts = session.exec(
        select(Alert)
        .where(
            Alert.tenant_id == caller.tenant_id,
            Alert.patient_id == patient_id,
            Alert.status != AlertStatus.RESOLVED,
        )
        .order_by(col(Alert.opened_at).desc())
        .limit(MAX_ALERT_CARDS)
    ).all()
    scores = latest_scores(session, caller.tenant_id, patient_id)
    cards = cards_for(
        alerts, scores, base_url, caller.tenant_id, patient_id, request.context.patientId
    )
    return {"cards": cards}


def _alert_for_card(session: Session, tenant_id: str, card: str) -> Alert | None:
    return session.exec(select(Alert).where(Alert.id == card, Alert.tenant_id == tenant_id)).first()


def _detail(item: CdsFeedback, accepted: list[str]) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "card": bare_uuid(item.card),
        "outcome": item.outcome,
        "outcome_timestamp": item.outcomeTimestamp.isoformat(),
    }
    if accepted:
        detail["accepted_suggestions"] = accepted
    reason = item.overrideReason
    if reason is not None and reason.reason is not None:
        detail["reason"] = {k: v for k, v in reason.reason.model_dump().items() if v is not None}
    if reason is not None and reason.userComment:
        detail["comment"] = reason.userComment  # free text: kept on the alert, never logged
    return detail


def record_feedback(
    session: Session, caller: CdsCaller, feedback: list[CdsFeedback]
) -> dict[str, int]:
    """Record each card outcome on its alert's history; an accepted Acknowledge acknowledges.

    Feedback on a card careloop cannot map to one of the tenant's alerts (the info card, or an
    unknown uuid) is ignored. Returns how many were recorded and ignored.
    """
    recorded = ignored = 0
    for item in feedback:
        alert = _alert_for_card(session, caller.tenant_id, bare_uuid(item.card))
        if alert is None:
            ignored += 1
            continue
        accepted = [bare_uuid(s.id) for s in item.acceptedSuggestions]
        kind = (
            AlertEventKind.CARD_ACCEPTED
            if item.outcome == "accepted"
            else AlertEventKind.CARD_OVERRIDDEN
        )
        session.add(
            AlertEvent(
                alert_id=alert.id,
                kind=kind,
                actor=caller.actor,
                detail=orjson.dumps(_detail(item, accepted)).decode(),
            )
        )
        session.flush()
        recorded += 1
        wants_ack = suggestion_uuid(alert.id, ACKNOWLEDGE) in accepted
        if item.outcome == "accepted" and wants_ack and alert.status == AlertStatus.OPEN:
            try:
                acknowledge(session, caller.tenant_id, alert.id, caller.actor)
            except ApiError:  # resolved meanwhile: the feedback stays recorded
                log.info("cds acknowledge skipped: alert %s is resolved", alert.id)
    return {"recorded": recorded, "ignored": ignored}
