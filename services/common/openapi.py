"""What the OpenAPI says of the API: request bodies read by hand, real statuses and media types.

Endpoints that read their body with ``read_json_body`` (so that every refusal stays an
OperationOutcome) declare it with ``json_body``; ``errors`` and ``json_ok`` list what an
operation answers. ``install`` adds the shared schemas and the bearer security scheme.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from careloop.services.common.errors import FHIR_JSON

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html"
OUTCOME_REF = {"$ref": "#/components/schemas/OperationOutcome"}
BEARER = "bearer"

OPERATION_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": "A FHIR R4 OperationOutcome; issue.expression names the field.",
    "required": ["resourceType", "issue"],
    "properties": {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["severity", "code"],
                "properties": {
                    "severity": {"type": "string"},
                    "code": {"type": "string"},
                    "diagnostics": {"type": "string"},
                    "expression": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

_REASONS = {
    400: "Malformed JSON, a control character in the path or query, or a bad parameter",
    401: "No valid bearer token",
    403: "The token's scopes do not allow this",
    404: "Not known (or not visible to this tenant)",
    409: "Conflicts with what is stored",
    413: "The body (or batch) is over the limit",
    415: "The body is not JSON",
    422: "A field is invalid; issue.expression names it",
    429: "Too many requests from this client or address; retry after Retry-After seconds",
    503: "Concurrent writes collided; nothing was written, retry (Retry-After)",
}
_SCHEMAS: dict[str, dict[str, Any]] = {"OperationOutcome": OPERATION_OUTCOME}


def schema_ref(model: type[BaseModel]) -> dict[str, Any]:
    """A ``$ref`` to ``model``'s JSON schema, registered among the components."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    _SCHEMAS.update(schema.pop("$defs", {}))
    _SCHEMAS[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_body(
    model: type[BaseModel] | dict[str, Any],
    *,
    required: bool = True,
    media_types: tuple[str, ...] = (JSON, FHIR_JSON),
) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``model`` (or a raw JSON schema)."""
    schema = schema_ref(model) if isinstance(model, type) else model
    return {
        "requestBody": {
            "required": required,
            "content": {media_type: {"schema": schema} for media_type in media_types},
        }
    }


def outcome(status: int, description: str | None = None) -> dict[str, Any]:
    """A response carrying an OperationOutcome."""
    return {
        "description": description or _REASONS.get(status, "Refused"),
        "content": {FHIR_JSON: {"schema": OUTCOME_REF}},
    }


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for refusals answered with an OperationOutcome."""
    return {status: outcome(status) for status in statuses}


def json_ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A success response with a JSON body."""
    return {"description": description, "content": {JSON: {"schema": schema or {"type": "object"}}}}


def install(app: FastAPI) -> None:
    """Serve an OpenAPI with the shared component schemas and the bearer scheme."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for name, schema in _SCHEMAS.items():
                schemas.setdefault(name, schema)
            components.setdefault("securitySchemes", {})[BEARER] = {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token from POST /oauth/token",
            }
            # Every authenticated operation is rate limited per client (services/deps.py).
            for path_item in document.get("paths", {}).values():
                for operation in path_item.values():
                    if isinstance(operation, dict) and operation.get("security"):
                        operation.setdefault("responses", {}).setdefault("429", outcome(429))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
