"""Validation of FHIR R4 resources with the ``fhir.resources.R4B`` models.

``validate_resource`` is the single gate every resource passes before it is stored: it checks the
structure and datatypes (not terminology bindings) and returns the canonical JSON form.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from pydantic import ValidationError

_ABSTRACT_TYPES = frozenset({"Resource", "DomainResource"})


@dataclass(frozen=True)
class FieldIssue:
    """One problem, located by a FHIRPath-like ``expression`` (``Observation.status``)."""

    expression: str
    message: str


class FhirValidationError(ValueError):
    """A resource that is not valid FHIR R4; ``issues`` names each offending element."""

    def __init__(self, issues: Sequence[FieldIssue]) -> None:
        self.issues: list[FieldIssue] = list(issues)
        super().__init__("; ".join(f"{i.expression}: {i.message}" for i in self.issues))


@lru_cache(maxsize=256)
def _model_class(resource_type: str) -> type[FHIRAbstractModel] | None:
    if resource_type in _ABSTRACT_TYPES or not resource_type.isalpha():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except ValueError:
        return None
    return cls if cls.has_resource_base() else None


def _expression(root: str, loc: tuple[int | str, ...]) -> str:
    """Turn a pydantic error location into a FHIRPath-like path."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "resource_type":
            path += ".resourceType"
        elif part.endswith("__ext"):
            path += f"._{part.removesuffix('__ext')}"
        elif part.replace("_", "").isalnum():
            path += f".{part}"
        # anything else is a pydantic-internal step (union tag, validator name): skip it
    return path


def _issues(root: str, error: ValidationError) -> list[FieldIssue]:
    return [FieldIssue(_expression(root, tuple(e["loc"])), e["msg"]) for e in error.errors()]


def validate_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate ``resource`` as FHIR R4 and return its canonical JSON dict.

    Raises FhirValidationError whose issues name the offending elements (``resourceType`` when
    the type is missing or not a FHIR resource).
    """
    if not isinstance(resource, dict):
        raise FhirValidationError([FieldIssue("resourceType", "a resource must be a JSON object")])
    resource_type = resource.get("resourceType")
    cls = _model_class(resource_type) if isinstance(resource_type, str) else None
    if cls is None or not isinstance(resource_type, str):
        raise FhirValidationError(
            [FieldIssue("resourceType", "missing or not a FHIR R4 resource type")]
        )
    try:
        model = cls.model_validate(resource)
    except ValidationError as exc:
        raise FhirValidationError(_issues(resource_type, exc)) from None
    return model.model_dump(mode="json")
