"""Validation of written resources: R4B structure, required status codes, Patient references."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class

from .errors import FhirError
from .store import Resource, Txn

SUPPORTED_TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "QuestionnaireResponse",
        "Questionnaire",
        "Encounter",
        "Provenance",
        "Task",
        "Communication",
        "CarePlan",
        "Goal",
        "CareTeam",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Flag",
        "Consent",
        "RiskAssessment",
        "AuditEvent",
        "Device",
        "Condition",
        "ServiceRequest",
        "DocumentReference",
    }
)

# Required bindings that fhir.resources does not enforce.
_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Observation", "status"): frozenset(
        "registered preliminary final amended corrected cancelled entered-in-error unknown".split()
    ),
    ("QuestionnaireResponse", "status"): frozenset(
        "in-progress completed amended entered-in-error stopped".split()
    ),
    ("Encounter", "status"): frozenset(
        "planned arrived triaged in-progress onleave finished cancelled entered-in-error "
        "unknown".split()
    ),
    ("Task", "status"): frozenset(
        "draft requested received accepted rejected ready cancelled in-progress on-hold failed "
        "completed entered-in-error".split()
    ),
    ("Task", "intent"): frozenset(
        "unknown proposal plan order original-order reflex-order filler-order instance-order "
        "option".split()
    ),
    ("Communication", "status"): frozenset(
        "preparation in-progress not-done on-hold stopped completed entered-in-error "
        "unknown".split()
    ),
    ("CarePlan", "status"): frozenset(
        "draft active on-hold revoked completed entered-in-error unknown".split()
    ),
    ("CarePlan", "intent"): frozenset("proposal plan order option".split()),
    ("Goal", "lifecycleStatus"): frozenset(
        "proposed planned accepted active on-hold completed cancelled entered-in-error "
        "rejected".split()
    ),
    ("CareTeam", "status"): frozenset(
        "proposed active suspended inactive entered-in-error".split()
    ),
    ("Flag", "status"): frozenset("active inactive entered-in-error".split()),
}
_PRIORITY = frozenset("routine urgent asap stat".split())


def require_supported(rtype: str) -> None:
    """404 for a type this server does not host."""
    if rtype not in SUPPORTED_TYPES:
        raise FhirError(404, f"Resource type {rtype!r} is not supported", "not-supported")


def validate_resource(rtype: str, resource: Any) -> None:
    """400 with an OperationOutcome naming the element unless ``resource`` is a valid R4B one."""
    if not isinstance(resource, dict):
        raise FhirError(400, "The body is not a JSON object", "structure")
    if resource.get("resourceType") != rtype:
        raise FhirError(
            400,
            f"resourceType {resource.get('resourceType')!r} does not match {rtype!r}",
            "structure",
            [f"{rtype}.resourceType"],
        )
    model = get_fhir_model_class(rtype)
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join([rtype, *(str(p) for p in first["loc"])])
        raise FhirError(400, f"{path}: {first['msg']}", "structure", [path]) from None
    for (ctype, field), allowed in _CODES.items():
        if ctype == rtype and field in resource and resource[field] not in allowed:
            raise FhirError(
                400,
                f"{rtype}.{field}: {resource[field]!r} is not in the required value set",
                "code-invalid",
                [f"{rtype}.{field}"],
            )
    if resource.get("priority") is not None and rtype in ("Task", "Communication"):
        if resource["priority"] not in _PRIORITY:
            raise FhirError(
                400, f"{rtype}.priority: invalid code", "code-invalid", [f"{rtype}.priority"]
            )


def iter_references(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Reference object (a dict with a string ``reference``) under ``node`` with its path."""
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield path, node
        for key, value in node.items():
            if key not in ("contained", "reference"):
                yield from iter_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from iter_references(item, f"{path}[{index}]")


def rewrite_references(resource: Resource, rewrite: Callable[[str], str]) -> None:
    """Replace each ``reference`` value in place with ``rewrite(value)``."""
    for _, ref in iter_references(resource, resource.get("resourceType", "")):
        ref["reference"] = rewrite(ref["reference"])


def relative_reference(reference: str, base_url: str) -> str:
    """``Type/id`` for a reference to this server (absolute URLs on it are shortened)."""
    prefix = base_url.rstrip("/") + "/"
    return reference[len(prefix) :] if reference.startswith(prefix) else reference


def check_patient_references(txn: Txn, resource: Resource, base_url: str) -> None:
    """422 when the resource references a Patient this server does not hold."""
    rtype = resource.get("resourceType", "")
    for path, ref in iter_references(resource, rtype):
        target = relative_reference(ref["reference"], base_url).split("/_history/")[0]
        parts = target.split("/")
        if len(parts) == 2 and parts[0] == "Patient" and txn.read("Patient", parts[1]) is None:
            raise FhirError(
                422,
                f"{path}: reference {ref['reference']!r} does not resolve to a known Patient",
                "not-found",
                [path],
            )
