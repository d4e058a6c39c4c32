"""Errors as FHIR OperationOutcomes: every 4xx names the field it is about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.responses import Response

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome issue: an IssueType code, what is wrong and where."""

    code: str
    diagnostics: str
    expression: str | None = None
    severity: str = "error"

    def as_fhir(self) -> dict[str, Any]:
        """The issue as FHIR JSON."""
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = [self.expression]
        return issue


class ApiError(Exception):
    """An error answered with an HTTP status and an OperationOutcome."""

    def __init__(
        self, status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(issues[0].diagnostics if issues else str(status))
        self.status = status
        self.issues = list(issues)
        self.headers = headers or {}

    @classmethod
    def invalid(cls, field: str, message: str, status: int = 422) -> ApiError:
        """A request whose ``field`` is invalid."""
        return cls(status, [Issue("invalid", message, field)])

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        """Nothing known by that name (or not visible to this tenant)."""
        return cls(404, [Issue("not-found", f"{what} is not known")])


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource for ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in issues]}


def outcome_response(
    status: int, issues: Sequence[Issue], headers: dict[str, str] | None = None
) -> Response:
    """An HTTP response carrying an OperationOutcome."""
    return Response(
        orjson.dumps(operation_outcome(issues)),
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


def json_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as a JSON field path: ``("answers", 3)`` -> ``answers[3]``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + part
    return path or "body"


class FieldError(ValueError):
    """A domain rule broken by one input field; endpoints turn it into a 422 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
