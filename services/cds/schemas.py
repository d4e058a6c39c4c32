"""The JSON bodies of CDS Hooks 2.0 calls careloop accepts, every value bounded."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from careloop.services.common.constrained import SafeDatetime, Text200, Text4000, Uri300, Uri2000

FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"
UUID = r"^(urn:uuid:)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
FhirId = Annotated[str, Field(pattern=FHIR_ID, max_length=64)]
Uuid = Annotated[str, Field(pattern=UUID, max_length=45)]
UserRef = Annotated[
    str,
    Field(
        pattern=r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$",
        max_length=100,
    ),
]
MAX_IDENTIFIERS = 50


class CdsIdentifier(BaseModel):
    """A Patient identifier as the EHR sends it (only ``system`` and ``value`` are used)."""

    model_config = ConfigDict(extra="ignore")

    system: Uri300 | None = None
    value: Text200 | None = None


class CdsPrefetchedPatient(BaseModel):
    """The prefetched ``Patient/{{context.patientId}}``: careloop reads its id and identifiers."""

    model_config = ConfigDict(extra="ignore")

    resourceType: Literal["Patient"]
    id: FhirId | None = None
    identifier: list[CdsIdentifier] = Field(default_factory=list, max_length=MAX_IDENTIFIERS)


class CdsPrefetch(BaseModel):
    """Prefetched data by template key; a key the EHR could not fill is absent, none is null."""

    model_config = ConfigDict(extra="ignore")

    patient: CdsPrefetchedPatient | None = None


class CdsPatientViewContext(BaseModel):
    """The ``patient-view`` context."""

    model_config = ConfigDict(extra="ignore")

    userId: UserRef
    patientId: FhirId
    encounterId: FhirId | None = None


class CdsHookRequest(BaseModel):
    """A ``patient-view`` call (``fhirAuthorization`` is neither needed nor kept)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "hook": "patient-view",
                    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                    "fhirServer": "https://ehr.example/fhir",
                    "context": {"userId": "Practitioner/123", "patientId": "1288992"},
                    "prefetch": {"patient": {"resourceType": "Patient", "id": "1288992"}},
                }
            ]
        },
    )

    hook: Literal["patient-view"]
    hookInstance: Uuid
    fhirServer: Annotated[Uri2000, Field(pattern=r"^https?://")] | None = None
    context: CdsPatientViewContext
    prefetch: CdsPrefetch | None = None


class CdsCoding(BaseModel):
    """A Coding (an override reason)."""

    model_config = ConfigDict(extra="ignore")

    system: Uri300 | None = None
    code: Annotated[str, Field(pattern=r"^[^\s\x00-\x1f\x7f]{1,100}$")] | None = None
    display: Text200 | None = None


class CdsOverrideReason(BaseModel):
    """Why the clinician overrode the card: a reason and a free-text comment."""

    model_config = ConfigDict(extra="ignore")

    reason: CdsCoding | None = None
    userComment: Text4000 | None = None


class CdsAcceptedSuggestion(BaseModel):
    """A suggestion the clinician accepted, by its uuid."""

    model_config = ConfigDict(extra="ignore")

    id: Uuid


class CdsFeedback(BaseModel):
    """What the clinician did with one card."""

    model_config = ConfigDict(extra="ignore")

    card: Uuid
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[CdsAcceptedSuggestion] = Field(default_factory=list, max_length=20)
    overrideReason: CdsOverrideReason | None = None
    outcomeTimestamp: SafeDatetime


class CdsFeedbackRequest(BaseModel):
    """A feedback call: one or more cards acted on."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "feedback": [
                        {
                            "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
                            "outcome": "accepted",
                            "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
                            "outcomeTimestamp": "2026-12-01T14:12:20Z",
                        }
                    ]
                }
            ]
        },
    )

    feedback: list[CdsFeedback] = Field(min_length=1, max_length=50)


def bare_uuid(value: str) -> str:
    """A uuid without its ``urn:uuid:`` prefix, in lower case."""
    return value.removeprefix("urn:uuid:").lower()
