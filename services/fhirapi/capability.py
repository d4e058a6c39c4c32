"""The CapabilityStatement: exactly what careloop's FHIR API supports."""

from __future__ import annotations

from typing import Any

from careloop import __version__
from careloop.services.store.search import SEARCH_PARAMS, SORTS

CREATABLE = {
    "Observation",
    "QuestionnaireResponse",
    "CarePlan",
    "Goal",
    "CareTeam",
    "Practitioner",
    "PractitionerRole",
    "Consent",
}
BULK_DATA = "http://hl7.org/fhir/uv/bulkdata"
_TYPE_EXPORTS = {"Patient": "patient-export", "Group": "group-export"}
"""The Bulk Data kick-offs on a type (services/bulk); the system-level one is on ``rest``."""
UPDATABLE = {"CarePlan", "Goal", "CareTeam", "Practitioner", "PractitionerRole", "Consent", "Task"}


def capability_statement(fhir_base: str, token_url: str) -> dict[str, Any]:
    """careloop's CapabilityStatement (R4, JSON only, SMART Backend Services security)."""
    resources = []
    for rtype in sorted(SEARCH_PARAMS):
        interactions = [{"code": "read"}, {"code": "vread"}, {"code": "search-type"}]
        if rtype in CREATABLE:
            interactions.append({"code": "create"})
        if rtype in UPDATABLE:
            interactions.append({"code": "update"})
        entry: dict[str, Any] = {
            "type": rtype,
            "versioning": "versioned",
            "readHistory": False,
            "updateCreate": False,
            "conditionalUpdate": False,
            "conditionalCreate": rtype in CREATABLE,
            "interaction": interactions,
            "searchParam": [
                {"name": name, "type": spec.fhir_type}
                for name, spec in sorted(SEARCH_PARAMS[rtype].items())
            ],
        }
        if any(name == "date" for name in SEARCH_PARAMS[rtype]):
            entry["extension"] = [
                {
                    "url": "https://careloop.io/fhir/StructureDefinition/supported-sorts",
                    "valueString": " ".join(sorted(SORTS)),
                }
            ]
        if rtype in _TYPE_EXPORTS:
            entry["operation"] = [
                {
                    "name": "export",
                    "definition": f"{BULK_DATA}/OperationDefinition/{_TYPE_EXPORTS[rtype]}",
                }
            ]
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "instantiates": [f"{BULK_DATA}/CapabilityStatement/bulk-data"],
        "software": {"name": "careloop", "version": __version__},
        "implementation": {"description": "careloop FHIR API", "url": fhir_base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": token_url}],
                        }
                    ],
                },
                "resource": resources,
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
                "operation": [
                    {"name": "export", "definition": f"{BULK_DATA}/OperationDefinition/export"}
                ],
            }
        ],
    }
