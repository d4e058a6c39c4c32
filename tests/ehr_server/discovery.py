"""Discovery documents: SMART configuration, OpenID configuration, CapabilityStatement."""

from __future__ import annotations

from typing import Any

from .search import REFERENCE_PARAMS, TOKEN_PARAMS
from .validation import SUPPORTED_TYPES

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "sso-openid-connect",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
]
SEARCH_PARAMS = ["_id", "_lastUpdated", "status", *TOKEN_PARAMS, *REFERENCE_PARAMS]


def smart_configuration(base_url: str, auth_url: str) -> dict[str, Any]:
    """``.well-known/smart-configuration`` for the FHIR base ``base_url``."""
    return {
        "issuer": base_url,
        "jwks_uri": f"{auth_url}/jwks",
        "authorization_endpoint": f"{auth_url}/authorize",
        "token_endpoint": f"{auth_url}/token",
        "grant_types_supported": ["client_credentials", "authorization_code"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "system/*.cruds",
            "system/*.rs",
            "user/*.cruds",
            "patient/*.cruds",
            "launch",
            "launch/patient",
            "launch/encounter",
            "openid",
            "fhirUser",
            "offline_access",
            "online_access",
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(base_url: str, auth_url: str) -> dict[str, Any]:
    """A minimal OpenID Provider configuration (for ``id_token`` verification)."""
    return {
        "issuer": base_url,
        "jwks_uri": f"{auth_url}/jwks",
        "authorization_endpoint": f"{auth_url}/authorize",
        "token_endpoint": f"{auth_url}/token",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def capability_statement(base_url: str, auth_url: str) -> dict[str, Any]:
    """The server's R4 CapabilityStatement."""
    interactions = ["read", "vread", "update", "history-instance", "create", "search-type"]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2024-01-01",
        "kind": "instance",
        "implementation": {"description": "careloop test EHR", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": {
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
                            "extension": [
                                {"url": "token", "valueUri": f"{auth_url}/token"},
                                {"url": "authorize", "valueUri": f"{auth_url}/authorize"},
                            ],
                        }
                    ],
                },
                "resource": [
                    {
                        "type": rtype,
                        "interaction": [{"code": code} for code in interactions],
                        "versioning": "versioned",
                        "conditionalCreate": True,
                        "conditionalUpdate": True,
                        "searchParam": [
                            {"name": name, "type": _param_type(name)} for name in SEARCH_PARAMS
                        ],
                    }
                    for rtype in sorted(SUPPORTED_TYPES)
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }


def _param_type(name: str) -> str:
    if name == "_lastUpdated":
        return "date"
    return "reference" if name in REFERENCE_PARAMS else "token"
