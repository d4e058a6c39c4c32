"""Provenance for the resources careloop writes on behalf of an app client."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from careloop.fhir.elements import coding, fhir_datetime, reference
from careloop.fhir.errors import MappingError
from careloop.fhir.identifiers import APP_CLIENT_SYSTEM, business_identifier, deterministic_id
from careloop.fhir.terminology import (
    BUSINESS_IDENTIFIER_EXTENSION,
    PROVENANCE_PARTICIPANT_TYPE,
    V3_DATA_OPERATION,
)
from careloop.fhir.validation import checked

ACTIVITIES = {"CREATE": "create", "UPDATE": "revise", "DELETE": "delete"}


def agent(role: str, who: dict[str, Any]) -> dict[str, Any]:
    """A Provenance agent: ``role`` from provenance-participant-type (``assembler``...)."""
    return {
        "type": {"coding": [coding(PROVENANCE_PARTICIPANT_TYPE, role, role.capitalize())]},
        "who": who,
    }


def app_client_agent(client_id: str) -> dict[str, Any]:
    """The app client that sent the data: ``assembler``, a Device known by its client id."""
    return agent(
        "assembler",
        {
            "type": "Device",
            "identifier": {"system": APP_CLIENT_SYSTEM, "value": client_id},
            "display": f"app client {client_id}",
        },
    )


def provenance_resource(
    provenance_id: str,
    business_key: str,
    targets: Sequence[str],
    recorded: datetime,
    activity: str,
    agents: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """A Provenance (not yet validated) with careloop's business identifier extension.

    R4 Provenance has no identifier element, so the business identifier (``provenance`` /
    ``business_key``) travels in careloop's ``business-identifier`` extension.
    """
    display = ACTIVITIES.get(activity)
    if display is None:
        raise MappingError("activity", "must be one of " + ", ".join(ACTIVITIES))
    return {
        "resourceType": "Provenance",
        "id": provenance_id,
        "extension": [
            {
                "url": BUSINESS_IDENTIFIER_EXTENSION,
                "valueIdentifier": business_identifier("provenance", business_key),
            }
        ],
        "target": [{"reference": t} for t in targets],
        "recorded": fhir_datetime(recorded, "recorded"),
        "activity": {"coding": [coding(V3_DATA_OPERATION, activity, display)]},
        "agent": list(agents),
    }


def map_provenance(
    report_id: str,
    targets: Sequence[str],
    recorded: datetime,
    client_id: str,
    patient_id: str,
    activity: str = "CREATE",
) -> dict[str, Any]:
    """A validated Provenance for ``targets`` (references such as ``Observation/abc``).

    agent[0] is the app client (type ``assembler``, a Device known by its client id), agent[1]
    the patient who supplied the information (type ``informant``). R4 Provenance has no
    identifier element, so the business identifier travels in the careloop
    ``business-identifier`` extension. Raises MappingError (targets, recorded, activity).
    """
    if isinstance(targets, str) or not targets:
        raise MappingError("targets", "needs at least one target reference")
    if any(not isinstance(t, str) or "/" not in t for t in targets):
        raise MappingError("targets", "each target must be a reference like Type/id")
    agents = [app_client_agent(client_id), agent("informant", reference("Patient", patient_id))]
    return checked(
        provenance_resource(
            deterministic_id(report_id, "provenance"),
            report_id,
            targets,
            recorded,
            activity,
            agents,
        )
    )
