"""The FHIR API as OpenAPI describes it: request bodies, parameters, status codes and types.

The endpoints read their bodies by hand (``read_json_body``), so FastAPI cannot see them; these
schemas tell clients and API fuzzers what each operation takes and answers. They describe the
shape careloop accepts (FHIR R4 JSON, ``application/fhir+json``); the server still validates
everything itself.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from careloop.services.common.errors import FHIR_JSON
from careloop.services.fhirapi import capability
from careloop.services.store.search import SEARCH_PARAMS, SORTS, TOTAL_MODES

CREATABLE = tuple(sorted(capability.CREATABLE))
UPDATABLE = tuple(sorted(capability.UPDATABLE))
SEARCHABLE = tuple(sorted(SEARCH_PARAMS))
FHIR_ID_PATTERN = r"^[A-Za-z0-9\-.]{1,64}$"


class FhirJSONResponse(Response):
    """Documents FHIR JSON as the media type of the FHIR operations' answers."""

    media_type = FHIR_JSON


_STRING = {"type": "string", "minLength": 1, "maxLength": 300}
_DATE_TIME = {"type": "string", "format": "date-time"}
_REFERENCE = {
    "type": "object",
    "properties": {"reference": {"type": "string", "maxLength": 300}},
    "required": ["reference"],
}
_CODING = {"type": "object", "properties": {"system": _STRING, "code": _STRING}}
_CONCEPT = {
    "type": "object",
    "properties": {
        "coding": {"type": "array", "items": _CODING, "maxItems": 5},
        "text": {"type": "string", "maxLength": 200},
    },
}
_IDENTIFIER = {
    "type": "object",
    "properties": {"system": _STRING, "value": _STRING},
    "required": ["value"],
}
_IDENTIFIERS = {"type": "array", "items": _IDENTIFIER, "maxItems": 5}


def _resource(rtype: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> Any:
    return {
        "type": "object",
        "title": rtype,
        "properties": {"resourceType": {"const": rtype}, **properties},
        "required": ["resourceType", *required],
    }


_ANSWER = {
    "type": "object",
    "properties": {
        "valueCoding": _CODING,
        "valueInteger": {"type": "integer", "minimum": 0, "maximum": 3},
    },
}
SCHEMAS: dict[str, Any] = {
    "Observation": _resource(
        "Observation",
        {
            "status": {"enum": ["registered", "preliminary", "final", "amended"]},
            "category": {"type": "array", "items": _CONCEPT, "maxItems": 3},
            "code": _CONCEPT,
            "subject": _REFERENCE,
            "effectiveDateTime": _DATE_TIME,
            "valueInteger": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
            "valueQuantity": {
                "type": "object",
                "properties": {"value": {"type": "number"}, "unit": {"type": "string"}},
            },
            "identifier": _IDENTIFIERS,
        },
        ("status", "code", "subject"),
    ),
    "QuestionnaireResponse": _resource(
        "QuestionnaireResponse",
        {
            "status": {"enum": ["completed", "amended", "in-progress"]},
            "questionnaire": {"type": "string", "maxLength": 300},
            "subject": _REFERENCE,
            "authored": _DATE_TIME,
            "identifier": _IDENTIFIER,
            "item": {
                "type": "array",
                "maxItems": 12,
                "items": {
                    "type": "object",
                    "properties": {
                        "linkId": {"type": "string", "maxLength": 64},
                        "answer": {"type": "array", "items": _ANSWER, "maxItems": 2},
                    },
                    "required": ["linkId"],
                },
            },
        },
        ("status", "subject", "authored"),
    ),
    "CarePlan": _resource(
        "CarePlan",
        {
            "status": {"enum": ["draft", "active", "completed"]},
            "intent": {"enum": ["proposal", "plan", "order"]},
            "subject": _REFERENCE,
            "goal": {"type": "array", "items": _REFERENCE, "maxItems": 3},
            "identifier": _IDENTIFIERS,
        },
        ("status", "intent", "subject"),
    ),
    "Goal": _resource(
        "Goal",
        {
            "lifecycleStatus": {"enum": ["proposed", "active", "completed"]},
            "description": _CONCEPT,
            "subject": _REFERENCE,
            "identifier": _IDENTIFIERS,
        },
        ("lifecycleStatus", "description", "subject"),
    ),
    "CareTeam": _resource(
        "CareTeam",
        {
            "status": {"enum": ["proposed", "active", "inactive"]},
            "subject": _REFERENCE,
            "identifier": _IDENTIFIERS,
        },
    ),
    "Practitioner": _resource("Practitioner", {"identifier": _IDENTIFIERS}),
    "PractitionerRole": _resource(
        "PractitionerRole", {"practitioner": _REFERENCE, "identifier": _IDENTIFIERS}
    ),
    "Consent": _resource(
        "Consent",
        {
            "status": {"enum": ["draft", "proposed", "active"]},
            "scope": _CONCEPT,
            "category": {"type": "array", "items": _CONCEPT, "minItems": 1, "maxItems": 3},
            "patient": _REFERENCE,
            "dateTime": _DATE_TIME,
            "identifier": _IDENTIFIERS,
        },
        ("status", "scope", "category"),
    ),
    "Task": _resource(
        "Task",
        {
            "id": {"type": "string", "pattern": FHIR_ID_PATTERN},
            "status": {"enum": ["requested", "accepted", "completed"]},
            "intent": {"enum": ["order", "plan"]},
            "owner": _REFERENCE,
            "note": {
                "type": "array",
                "maxItems": 3,
                "items": {"type": "object", "properties": {"text": {"type": "string"}}},
            },
        },
        ("status", "intent"),
    ),
}
OPERATION_OUTCOME = {
    "type": "object",
    "title": "OperationOutcome",
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "severity": {"enum": ["fatal", "error", "warning", "information"]},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["severity", "code"],
            },
        },
    },
    "required": ["resourceType", "issue"],
}
ANY_RESOURCE = {
    "type": "object",
    "properties": {"resourceType": {"type": "string"}},
    "required": ["resourceType"],
}
_ENTRY = {
    "type": "object",
    "properties": {
        "fullUrl": {"type": "string", "maxLength": 300},
        "request": {
            "type": "object",
            "properties": {
                "method": {"const": "POST"},
                "url": {"enum": list(CREATABLE)},
                "ifNoneExist": {"type": "string", "maxLength": 640},
            },
            "required": ["method", "url"],
        },
        "resource": {"anyOf": [SCHEMAS[t] for t in CREATABLE]},
    },
    "required": ["request", "resource"],
}
BUNDLE = {
    "type": "object",
    "title": "Bundle",
    "properties": {
        "resourceType": {"const": "Bundle"},
        "type": {"enum": ["batch", "transaction"]},
        "entry": {"type": "array", "items": _ENTRY, "maxItems": 1000},
    },
    "required": ["resourceType", "type"],
}

_ERRORS = {
    304: "Not modified (If-None-Match matched)",
    400: "Malformed request: bad id, version, header, search parameter or JSON",
    401: "No valid bearer token",
    403: "The token's scopes do not allow this",
    404: "Unknown resource type or resource",
    405: "The resource type does not support this interaction",
    409: "Conflicting duplicate",
    412: "If-Match names an older version, or conditional create matches several",
    413: "Body over the size limit, or a Bundle over the entry limit",
    415: "Body not application/fhir+json or application/json",
    422: "Invalid field or invalid FHIR",
    503: "Concurrent writes collided; retry",
}


def _content(schema: Any) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": schema}}


def responses(ok: dict[int, tuple[str, Any]], *errors: int) -> dict[int | str, Any]:
    """``responses=`` of an operation: its successes and the error codes it can answer."""
    out: dict[int | str, Any] = {
        code: {"description": text, "content": _content(schema)}
        for code, (text, schema) in ok.items()
    }
    for code in errors:
        if code == 304:
            out[code] = {"description": _ERRORS[code]}
        else:
            out[code] = {"description": _ERRORS[code], "content": _content(OPERATION_OUTCOME)}
    return out


def request_body(schema: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring the JSON body an operation reads by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {FHIR_JSON: {"schema": schema}, "application/json": {"schema": schema}},
        }
    }


_SEARCH_NAMES = sorted({name for params in SEARCH_PARAMS.values() for name in params})
SEARCH_PARAMETERS = {
    "parameters": [
        {
            "name": "_count",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
        {"name": "_sort", "in": "query", "required": False, "schema": {"enum": sorted(SORTS)}},
        {
            "name": "_total",
            "in": "query",
            "required": False,
            "description": "Bundle.total: counted up to 250 matches by default (omitted beyond), "
            "`accurate` counts all, `estimate` estimates beyond 250, `none` omits it.",
            "schema": {"enum": list(TOTAL_MODES)},
        },
        {
            "name": "_page",
            "in": "query",
            "required": False,
            "description": "The token of a next link; careloop refuses any other (400).",
            "schema": {"type": "string", "maxLength": 512},
        },
        *(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 2048},
            }
            for name in _SEARCH_NAMES
        ),
    ]
}
