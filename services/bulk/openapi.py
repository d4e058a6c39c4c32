"""What the OpenAPI document says of the ``$export`` operations (schemathesis tests from it)."""

from __future__ import annotations

from typing import Any

from careloop.services.common.errors import FHIR_JSON
from careloop.services.fhirapi.openapi import OPERATION_OUTCOME

_DESCRIPTIONS = {
    400: "Missing Prefer: respond-async, or a bad or unsupported parameter (named)",
    401: "No valid bearer token",
    403: "The token's scopes do not cover a type in _type (or Group for a Group export)",
    404: "Unknown Group, job or file (or a job of another client, cancelled or expired)",
    406: "Accept is not application/fhir+json",
    429: "Too many unfinished exports for this client; Retry-After says when to try again",
    500: "The export failed (an OperationOutcome, as the Bulk Data specification asks)",
}
_OUTCOME = {FHIR_JSON: {"schema": OPERATION_OUTCOME}}
MANIFEST = {
    "type": "object",
    "required": ["transactionTime", "request", "requiresAccessToken", "output", "error"],
    "properties": {
        "transactionTime": {"type": "string"},
        "request": {"type": "string"},
        "requiresAccessToken": {"const": True},
        "output": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "url"],
                "properties": {
                    "type": {"type": "string"},
                    "url": {"type": "string"},
                    "count": {"type": "integer"},
                },
            },
        },
        "error": {"type": "array"},
    },
}
KICKOFF_PARAMETERS = {
    "parameters": [
        {
            "name": "_type",
            "in": "query",
            "required": False,
            "description": "Comma-separated resource types (default: every type the token reads)",
            "schema": {"type": "string", "maxLength": 1000},
        },
        {
            "name": "_since",
            "in": "query",
            "required": False,
            "description": "Only resources updated after this FHIR instant",
            "schema": {"type": "string", "maxLength": 40},
        },
        {
            "name": "_outputFormat",
            "in": "query",
            "required": False,
            "schema": {
                "type": "string",
                "enum": ["application/fhir+ndjson", "application/ndjson", "ndjson"],
            },
        },
    ]
}


def _errors(*codes: int) -> dict[int | str, Any]:
    return {code: {"description": _DESCRIPTIONS[code], "content": _OUTCOME} for code in codes}


KICKOFF: dict[int | str, Any] = {
    202: {
        "description": "Accepted: poll the Content-Location",
        "headers": {"Content-Location": {"schema": {"type": "string"}}},
        "content": _OUTCOME,
    },
    **_errors(400, 401, 403, 404, 406, 429),
}
STATUS: dict[int | str, Any] = {
    200: {
        "description": "Completed: the manifest",
        "content": {"application/json": {"schema": MANIFEST}},
    },
    202: {
        "description": "In progress (X-Progress, Retry-After)",
        "headers": {
            "X-Progress": {"schema": {"type": "string"}},
            "Retry-After": {"schema": {"type": "string"}},
        },
    },
    **_errors(400, 401, 404, 500),
}
CANCEL: dict[int | str, Any] = {
    202: {"description": "Cancelled; its files are deleted", "content": _OUTCOME},
    **_errors(400, 401, 404),
}
FILE: dict[int | str, Any] = {
    200: {
        "description": "One NDJSON file: one resource per line",
        "content": {"application/fhir+ndjson": {"schema": {"type": "string"}}},
    },
    **_errors(400, 401, 404),
}
