"""Business identifiers and deterministic resource ids.

Every resource careloop writes carries a business identifier under ``IDENTIFIER_BASE`` so that a
conditional create (``If-None-Exist: identifier=system|value``) can never make a second copy, and
an id derived from the report id so that a retried mapping gives identical resources.
"""

import uuid

IDENTIFIER_BASE = "https://careloop.io/fhir/sid"
APP_REPORT_BASE = f"{IDENTIFIER_BASE}/app-report"
APP_CLIENT_SYSTEM = f"{IDENTIFIER_BASE}/app-client"

IDENTIFIER_KINDS = frozenset(
    {
        "patient",
        "questionnaire-response",
        "observation",
        "encounter",
        "provenance",
        "report",
        "task",
        "communication",
        "care-plan",
        "goal",
        "care-team",
        "practitioner",
        "practitioner-role",
        "consent",
        "risk-assessment",
    }
)


def identifier_kind(resource_type: str) -> str:
    """The identifier kind of a resource type: ``CarePlan`` -> ``care-plan``."""
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in resource_type).lstrip("-")


# Fixed namespace of careloop's uuid5 ids: uuid5(NAMESPACE_URL, "https://careloop.io/fhir/ids").
# Never change it: every stored id derives from it.
CARELOOP_ID_NAMESPACE = uuid.UUID("7836ff32-0307-5386-8fb8-8965273720cb")


def business_identifier(kind: str, value: str) -> dict[str, str]:
    """The careloop business identifier of a resource of ``kind`` (e.g. "observation")."""
    if kind not in IDENTIFIER_KINDS:
        raise ValueError(f"unknown identifier kind {kind!r}")
    return {"system": f"{IDENTIFIER_BASE}/{kind}", "value": value}


def app_report_identifier(client_id: str, app_report_id: str) -> dict[str, str]:
    """The identifier an app gave its own report, scoped by the app client."""
    return {"system": f"{APP_REPORT_BASE}/{client_id}", "value": app_report_id}


def deterministic_id(report_id: str, role: str) -> str:
    """A resource id that depends only on ``report_id`` and the resource's ``role``."""
    return str(uuid.uuid5(CARELOOP_ID_NAMESPACE, f"{report_id}/{role}"))
