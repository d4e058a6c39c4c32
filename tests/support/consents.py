"""Synthetic FHIR Consent resources."""

from __future__ import annotations

from typing import Any


def deny_all_consent(patient: str) -> dict[str, Any]:
    """An active privacy Consent by which ``patient`` (a reference) opts out of everything."""
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": patient},
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}
            ]
        },
        "provision": {"type": "deny"},
    }
