"""Launches in flight and clinician sessions."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class LaunchState(SQLModel, table=True):
    """One authorization request in flight: ``state`` is single-use and short-lived."""

    __tablename__ = "launch_state"

    state: str = Field(primary_key=True, max_length=100)
    connection_id: str = Field(max_length=64)
    code_verifier: str = Field(max_length=200)
    token_endpoint: str = Field(max_length=500)
    browser_hash: str = Field(max_length=64)
    """SHA-256 (hex) of the launch cookie of the browser that started the launch."""
    nonce: str = Field(default="", max_length=100)
    """The OpenID Connect nonce sent; the id_token must carry it back."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ClinicianSession(SQLModel, table=True):
    """A signed-in browser: by password, or through the EHR with the launch context."""

    __tablename__ = "clinician_session"

    id: str = Field(primary_key=True, max_length=100)
    tenant_id: str = Field(max_length=64)
    clinician_id: str | None = Field(default=None, max_length=64, index=True)
    csrf_token: str = Field(default="", max_length=100)
    """Every form posts it back (synchronizer token)."""
    connection_id: str | None = Field(default=None, max_length=64)
    fhir_user: str | None = Field(default=None, max_length=200)
    ehr_patient_id: str | None = Field(default=None, max_length=64)
    patient_id: str | None = Field(default=None, max_length=64)
    encounter_id: str | None = Field(default=None, max_length=64)
    scope: str = Field(default="", max_length=2000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
