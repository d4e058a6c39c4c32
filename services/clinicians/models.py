"""Clinician accounts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class Clinician(SQLModel, table=True):
    """A person on a care team, signed in by password or by SMART App Launch from the EHR."""

    __tablename__ = "clinician"
    __table_args__ = (Index("ux_clinician_fhir_user", "tenant_id", "fhir_user", unique=True),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=64)
    email: str | None = Field(default=None, max_length=320, unique=True)
    """Stored lower-case; the sign-in name at ``/login``."""
    name: str = Field(max_length=200)
    practitioner: str | None = Field(default=None, max_length=200)
    """``Practitioner/{id}`` in careloop: recorded as who acted."""
    fhir_user: str | None = Field(default=None, max_length=500)
    """The EHR's ``fhirUser`` (from a validated id_token) for clinicians who launch from it."""
    password_hash: str | None = Field(default=None, max_length=300)
    active: bool = True
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
