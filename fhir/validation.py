"""Validation of FHIR R4 resources with the ``fhir.resources.R4B`` models.

``validate_resource`` is the single gate every resource passes before it is stored: it checks the
structure and datatypes, and the required status bindings the models leave open.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
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


# Required bindings fhir.resources does not enforce, for the resources careloop accepts and
# writes: a wrong status changes clinical meaning (an "entered-in-error" score is no score).
_REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Observation": {
        "status": frozenset(
            "registered preliminary final amended corrected cancelled entered-in-error"
            " unknown".split()
        )
    },
    "QuestionnaireResponse": {
        "status": frozenset("in-progress completed amended entered-in-error stopped".split())
    },
    "Encounter": {
        "status": frozenset(
            "planned arrived triaged in-progress onleave finished cancelled entered-in-error"
            " unknown".split()
        )
    },
    "CarePlan": {
        "status": frozenset(
            "draft active on-hold revoked completed entered-in-error unknown".split()
        ),
        "intent": frozenset("proposal plan order option".split()),
    },
    "Goal": {
        "lifecycleStatus": frozenset(
            "proposed planned accepted active on-hold completed cancelled entered-in-error"
            " rejected".split()
        )
    },
    "Task": {
        "status": frozenset(
            "draft requested received accepted rejected ready cancelled in-progress on-hold"
            " failed completed entered-in-error".split()
        ),
        "intent": frozenset(
            "unknown proposal plan order original-order reflex-order filler-order"
            " instance-order option".split()
        ),
    },
    "Consent": {
        "status": frozenset("draft proposed active rejected inactive entered-in-error".split())
    },
    "Communication": {
        "status": frozenset(
            "preparation in-progress not-done on-hold stopped completed entered-in-error"
            " unknown".split()
        )
    },
}


def _binding_issues(resource_type: str, resource: dict[str, Any]) -> list[FieldIssue]:
    issues = []
    for element, allowed in _REQUIRED_CODES.get(resource_type, {}).items():
        value = resource.get(element)
        if value is not None and value not in allowed:
            issues.append(
                FieldIssue(
                    f"{resource_type}.{element}",
                    f"not a code of the required value set ({', '.join(sorted(allowed))})",
                )
            )
    return issues


def check_resource(resource: dict[str, Any]) -> None:
    """Validate ``resource`` as FHIR R4 without re-serialising it (for resources careloop builds).

    Raises FhirValidationError like ``validate_resource``.
    """
    resource_type, cls = _resolve(resource)
    try:
        cls.model_validate(resource)
    except ValidationError as exc:
        raise FhirValidationError(_issues(resource_type, exc)) from None
    issues = _binding_issues(resource_type, resource)
    if issues:
        raise FhirValidationError(issues)


def _resolve(resource: Any) -> tuple[str, type[FHIRAbstractModel]]:
    if not isinstance(resource, dict):
        raise FhirValidationError([FieldIssue("resourceType", "a resource must be a JSON object")])
    resource_type = resource.get("resourceType")
    cls = _model_class(resource_type) if isinstance(resource_type, str) else None
    if cls is None or not isinstance(resource_type, str):
        raise FhirValidationError(
            [FieldIssue("resourceType", "missing or not a FHIR R4 resource type")]
        )
    return resource_type, cls


def validate_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate ``resource`` as FHIR R4 and return its canonical JSON dict.

    Raises FhirValidationError whose issues name the offending elements (``resourceType`` when
    the type is missing or not a FHIR resource, the element for a code outside a required
    value set).
    """
    resource_type, cls = _resolve(resource)
    try:
        model = cls.model_validate(resource)
    except ValidationError as exc:
        raise FhirValidationError(_issues(resource_type, exc)) from None
    issues = _binding_issues(resource_type, resource)
    if issues:
        raise FhirValidationError(issues)
    dumped: dict[str, Any] = model.model_dump(mode="json")
    return dumped


OWN_OUTPUT_CHECKS_ENV = "CARELOOP_CHECK_OWN_FHIR"
"""Set to ``true`` to validate every resource careloop builds as it builds it (the tests do)."""


@cache
def own_output_checks() -> bool:
    """Whether ``checked`` validates: off in production, on in the test suite.

    careloop's builders have fixed shapes and take only inputs that their schemas bounded, and
    ``tests/fhir/test_builders_valid.py`` validates their output over the whole input space
    (property-based), so a runtime check of each one is a millisecond per report that can only
    repeat a proof. Everything that comes from outside is still validated in full.
    """
    return os.environ.get(OWN_OUTPUT_CHECKS_ENV, "").strip().lower() in {"1", "true", "yes"}


def checked(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` itself (a builder's output), validated when ``own_output_checks`` is on."""
    if own_output_checks():
        check_resource(resource)
    return resource
