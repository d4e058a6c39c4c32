"""The EHRs allowed to call careloop's CDS services, and the JWT ids they have used."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class CdsClient(SQLModel, table=True):
    """A CDS client (an EHR) trusted by its JWT ``iss`` and its allow-listed JWKS URL."""

    __tablename__ = "cds_client"

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=64)
    iss: str = Field(max_length=500, unique=True)
    jwks_url: str = Field(max_length=2000)
    connection_id: str | None = Field(default=None, max_length=64)
    """The EHR connection whose patient links resolve ``context.patientId``."""
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CdsUsedJti(SQLModel, table=True):
    """A CDS client's JWT ``jti`` already seen; a replay is refused until the JWT expires."""

    __tablename__ = "cds_used_jti"

    iss: str = Field(primary_key=True, max_length=500)
    jti: str = Field(primary_key=True, max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
