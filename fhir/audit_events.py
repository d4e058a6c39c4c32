"""AuditEvent, shaped after IHE Basic Audit Log Patterns (BALP), from one audit trail entry.

Built on read from careloop's hash-chained entries (nothing FHIR is stored). Entries hold ids
only, so the AuditEvent does too: agents are known by identifier, entities by reference.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from careloop.fhir.elements import coding, fhir_datetime
from careloop.fhir.identifiers import IDENTIFIER_BASE
from careloop.fhir.validation import checked

AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"

SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
AGENT_SYSTEM = f"{IDENTIFIER_BASE}/audit-agent"

OUTCOMES = {"success": "0", "refused": "4", "blocked": "4", "failed": "8"}
"""careloop outcome -> AuditEvent.outcome (0 success, 4 minor failure, 8 serious failure)."""

# kind -> (type, subtype): what happened, in the code systems BALP uses.
_REST = (AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
_REST_UPDATE = (RESTFUL_INTERACTION, "update", "update")
_KINDS: dict[str, tuple[tuple[str, str, str], tuple[str, str, str] | None]] = {
    "read": (_REST, (RESTFUL_INTERACTION, "read", "read")),
    "search": (_REST, (RESTFUL_INTERACTION, "search-type", "search type")),
    "create": (_REST, (RESTFUL_INTERACTION, "create", "create")),
    "update": (_REST, _REST_UPDATE),
    "alert-ack": (_REST, _REST_UPDATE),
    "alert-resolve": (_REST, _REST_UPDATE),
    "egress": ((DICOM, "110106", "Export"), None),
    "export": ((DICOM, "110106", "Export"), None),
    "token": ((DICOM, "110114", "User Authentication"), (DICOM, "110122", "Login")),
    "sign-in": ((DICOM, "110114", "User Authentication"), (DICOM, "110122", "Login")),
    "consent": (_REST, None),
    "admin": ((DICOM, "110100", "Application Activity"), None),
}
KINDS = tuple(_KINDS)


@dataclass(frozen=True)
class AuditEntry:
    """What a FHIR AuditEvent needs from one entry of the trail (ids and codes only)."""

    id: str
    kind: str
    """read | search | create | update | alert-ack | alert-resolve | egress | export | token |
    sign-in | consent | admin (anything else is shown as admin)"""
    action: str
    """C R U D E"""
    recorded: datetime
    agent: str
    """Who acted: ``client:<id>``, ``clinician:<id>``, a worker's name."""
    outcome: str
    """success | refused | blocked | failed"""
    entities: Sequence[str] = ()
    """References (``Type/id``) concerned."""
    purpose: tuple[str, str] | None = None
    """(system, code) of the purpose of use, if known (v3-ActReason where one fits)."""
    destination: str = ""
    """Where data went (channel and host), for egress."""


def map_audit_event(entry: AuditEntry) -> dict[str, Any]:
    """A validated AuditEvent for ``entry`` (agent requestor, source careloop, entities)."""
    event_type, subtype = _KINDS.get(entry.kind, _KINDS["admin"])
    agents: list[dict[str, Any]] = [
        {
            "who": {"identifier": {"system": AGENT_SYSTEM, "value": entry.agent}},
            "requestor": True,
        }
    ]
    if entry.destination:
        agents.append(
            {
                "type": {"coding": [coding(DICOM, "110152", "Destination Role ID")]},
                "who": {"display": entry.destination},
                "requestor": False,
                "network": {"address": entry.destination[:200], "type": "1"},
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": entry.id,
        "type": coding(*event_type),
        "action": entry.action,
        "recorded": fhir_datetime(entry.recorded, "recorded"),
        "outcome": OUTCOMES.get(entry.outcome, "8"),
        "agent": agents,
        "source": {
            "observer": {"display": "careloop"},
            "type": [coding(SOURCE_TYPE, "4", "Application Server")],
        },
    }
    if subtype is not None:
        event["subtype"] = [coding(*subtype)]
    if entry.purpose is not None:
        event["purposeOfEvent"] = [{"coding": [coding(*entry.purpose)]}]
    entities = [_entity(ref) for ref in entry.entities if _is_reference(ref)]
    if entities:
        event["entity"] = entities
    return checked(event)


def _is_reference(value: str) -> bool:
    parts = value.split("/")
    versioned = len(parts) == 4 and parts[2] == "_history" and parts[3].isdigit()
    kind = parts[0]
    return (len(parts) == 2 or versioned) and kind[:1].isupper() and kind.isalpha() and all(parts)


def _entity(ref: str) -> dict[str, Any]:
    patient = ref.startswith("Patient/")
    return {
        "what": {"reference": ref},
        "type": coding(
            ENTITY_TYPE, "1" if patient else "2", "Person" if patient else "System Object"
        ),
        "role": coding(
            OBJECT_ROLE, "1" if patient else "4", "Patient" if patient else "Domain Resource"
        ),
    }
