"""Outbound mapping of chatbot and AI risk signals to a FHIR R4 RiskAssessment and Provenance.

A signal says that an app's model detected a risk (a category at a level) in a conversation;
it never carries the conversation's text, and neither do the resources: the conversation is at
most an opaque identifier in ``basis``. ``method`` is the kind of detector (chatbot, classifier)
and the model's name and version; the model is also a contained Device, the RiskAssessment's
``performer`` and the Provenance's ``performer`` agent. Ids and business identifiers derive
from ``RiskSignal.signal_id``, so mapping the same signal twice gives identical resources.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careloop.fhir.elements import coding, fhir_datetime, reference
from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import (
    IDENTIFIER_BASE,
    business_identifier,
    deterministic_id,
)
from careloop.fhir.provenance import agent, app_client_agent, provenance_resource
from careloop.fhir.terminology import (
    CARELOOP_FHIR,
)
from careloop.fhir.validation import checked

RISK_CATEGORY_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/risk-category"
"""careloop's CodeSystem of what a signal is about (no SNOMED code is claimed for these)."""
RISK_SOURCE_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/risk-signal-source"
"""careloop's CodeSystem of what kind of app component detected a signal."""
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
APP_SIGNAL_BASE = f"{IDENTIFIER_BASE}/app-risk-signal"
CONVERSATION_BASE = f"{IDENTIFIER_BASE}/app-conversation"

CATEGORIES = {
    "self-harm": "Self-harm",
    "suicidal-ideation": "Suicidal ideation",
    "crisis": "Acute crisis",
    "substance-use": "Substance use",
    "harm-to-others": "Harm to others",
}
"""risk-category codes and displays."""
LEVELS = {"low": "Low likelihood", "moderate": "Moderate likelihood", "high": "High likelihood"}
"""risk-probability codes (HL7) and their displays."""
SOURCES = {"chatbot": "Chatbot", "classifier": "Classifier"}
"""risk-signal-source codes and displays."""

_DEVICE = "model"  # the contained Device's local id


@dataclass(frozen=True)
class RiskSignal:
    """What careloop knows about one accepted risk signal."""

    signal_id: str  # stable careloop id of the signal; ids and business identifiers derive from it
    patient_id: str
    client_id: str  # the app client that posted it
    source: str
    category: str
    level: str
    model_name: str
    model_version: str
    detected: datetime  # timezone-aware
    conversation: str | None = None  # an opaque reference, never text
    app_signal_id: str | None = None


def risk_assessment_id(signal_id: str) -> str:
    """The id of the RiskAssessment of ``signal_id``."""
    return deterministic_id(signal_id, "risk-assessment")


def evidence_reference(value: str) -> str:
    """The reference an alert's evidence names: a stored ``Type/id``, or a bare Observation id."""
    return value if "/" in value else f"Observation/{value}"


def _device(signal: RiskSignal) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": _DEVICE,
        "deviceName": [{"name": signal.model_name, "type": "model-name"}],
        "version": [{"value": signal.model_version}],
    }


def _check(signal: RiskSignal) -> None:
    for name, value, known in (
        ("category", signal.category, CATEGORIES),
        ("level", signal.level, LEVELS),
        ("source", signal.source, SOURCES),
    ):
        if value not in known:
            raise MappingError(name, "must be one of " + ", ".join(known))


def map_risk_assessment(signal: RiskSignal) -> dict[str, Any]:
    """A validated RiskAssessment (status final) for ``signal``; MappingError on a bad field."""
    _check(signal)
    identifiers = [business_identifier("risk-assessment", signal.signal_id)]
    if signal.app_signal_id is not None:
        identifiers.append(
            {"system": f"{APP_SIGNAL_BASE}/{signal.client_id}", "value": signal.app_signal_id}
        )
    category = CATEGORIES[signal.category]
    level = LEVELS[signal.level]
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": risk_assessment_id(signal.signal_id),
        "contained": [_device(signal)],
        "identifier": identifiers,
        "status": "final",
        "method": {
            "coding": [coding(RISK_SOURCE_SYSTEM, signal.source, SOURCES[signal.source])],
            "text": f"{signal.model_name} {signal.model_version}",
        },
        "code": {"coding": [coding(RISK_CATEGORY_SYSTEM, signal.category, category)]},
        "subject": reference("Patient", signal.patient_id),
        "occurrenceDateTime": fhir_datetime(signal.detected, "detected"),
        "performer": {"reference": f"#{_DEVICE}", "type": "Device"},
        "prediction": [
            {
                "outcome": {"text": category},
                "qualitativeRisk": {
                    "coding": [coding(RISK_PROBABILITY, signal.level, level)],
                    "text": level,
                },
            }
        ],
    }
    if signal.conversation is not None:
        resource["basis"] = [
            {
                "identifier": {
                    "system": f"{CONVERSATION_BASE}/{signal.client_id}",
                    "value": signal.conversation,
                }
            }
        ]
    return checked(resource)


def map_risk_provenance(signal: RiskSignal, recorded: datetime) -> dict[str, Any]:
    """A validated Provenance of the signal's RiskAssessment.

    agent[0] is the model (type ``performer``, the contained Device), agent[1] the app client
    that sent it (``assembler``, a Device known by its client id). The business identifier
    travels in careloop's ``business-identifier`` extension (R4 Provenance has no identifier).
    """
    _check(signal)
    model = agent("performer", {"reference": f"#{_DEVICE}", "type": "Device"})
    provenance = provenance_resource(
        deterministic_id(signal.signal_id, "provenance"),
        signal.signal_id,
        [f"RiskAssessment/{risk_assessment_id(signal.signal_id)}"],
        recorded,
        "CREATE",
        [model, app_client_agent(signal.client_id)],
    )
    return checked({**provenance, "contained": [_device(signal)]})
