"""The FHIR R4 Consent careloop records for one app decision."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from careloop.integrations.egress.consent import PURPOSE_CODINGS
from careloop.services.consents.schemas import ConsentIn

APP_CONSENT_SYSTEM = "https://careloop.io/fhir/sid/app-consent"
"""Business identifier system; the value is ``<client id>|<app_consent_id or careloop id>``."""
_DISPLAY = {
    "care-team-alerts": "treatment (care-team alerts)",
    "ehr-sync": "EHR synchronisation",
    "research-export": "healthcare research (de-identified export)",
}


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def identifier_value(client_id: str, consent: ConsentIn, consent_id: str) -> str:
    """The stable business identifier of an app decision."""
    return f"{client_id}|{consent.app_consent_id or consent_id}"


def map_consent(
    consent_id: str, patient_id: str, client_id: str, consent: ConsentIn, now: datetime
) -> dict[str, Any]:
    """An active patient-privacy Consent permitting or denying one purpose."""
    system, code = PURPOSE_CODINGS[consent.purpose]
    provision: dict[str, Any] = {
        "type": consent.decision,
        "purpose": [{"system": system, "code": code, "display": _DISPLAY[consent.purpose]}],
    }
    if consent.period is not None and (consent.period.start or consent.period.end):
        provision["period"] = {
            k: _iso(v)
            for k, v in (("start", consent.period.start), ("end", consent.period.end))
            if v is not None
        }
    return {
        "resourceType": "Consent",
        "id": consent_id,
        "identifier": [
            {
                "system": APP_CONSENT_SYSTEM,
                "value": identifier_value(client_id, consent, consent_id),
            }
        ],
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [
            {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Consent"}]}
        ],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": _iso(now),
        "policyRule": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "OPTIN" if consent.decision == "permit" else "OPTOUT",
                }
            ]
        },
        "provision": provision,
    }


def single_purpose(resource: dict[str, Any]) -> tuple[str, str] | None:
    """The one (system, code) purpose a Consent's top provision names, if exactly one."""
    provision = resource.get("provision")
    if not isinstance(provision, dict):
        return None
    purposes = provision.get("purpose")
    if not isinstance(purposes, list) or len(purposes) != 1 or not isinstance(purposes[0], dict):
        return None
    if provision.get("provision"):  # nested exceptions: not a simple decision to supersede
        return None
    return str(purposes[0].get("system", "")), str(purposes[0].get("code", ""))
