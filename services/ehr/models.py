"""EHR connections and the state of syncing with each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow
from careloop.services.ehr.vocabulary import LinkMethod
from careloop.services.store.models import SeqType


class EhrConnection(SQLModel, table=True):
    """One EHR a tenant connected over SMART Backend Services."""

    __tablename__ = "ehr_connection"
    __table_args__ = (Index("ux_ehr_connection_name", "tenant_id", "name", unique=True),)

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(max_length=64)
    name: str = Field(max_length=100)
    fhir_base_url: str = Field(max_length=500)
    client_id: str = Field(max_length=200)
    scope: str = Field(sa_column=Column(Text, nullable=False))
    alg: str = Field(default="RS384", max_length=10)
    token_endpoint: str | None = Field(default=None, max_length=500)
    launch_client_id: str | None = Field(default=None, max_length=200)
    """careloop's client id as a SMART app (App Launch) at this EHR."""
    launch_client_secret: str | None = Field(default=None, max_length=500)
    """Its secret, encrypted; empty for a public client (PKCE only)."""
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    consecutive_failures: int = 0
    circuit_open_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=300)
    """A PHI-free reason (status code, error class)."""


class PatientLink(SQLModel, table=True):
    """Which EHR Patient a careloop patient is; never guessed."""

    __tablename__ = "patient_link"

    connection_id: str = Field(primary_key=True, max_length=64)
    patient_id: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=20)
    """A ``LinkState``."""
    ehr_patient_id: str | None = Field(default=None, max_length=64)
    method: str = Field(default=LinkMethod.IDENTIFIER, max_length=20)
    """A ``LinkMethod``."""
    ehr_label: str | None = Field(default=None, max_length=200)
    """How the EHR shows the patient (name or MRN), for the clinicians' pages only."""
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EhrWrite(SQLModel, table=True):
    """One careloop resource and its copy in one EHR."""

    __tablename__ = "ehr_write"
    __table_args__ = (Index("ix_ehr_write_state", "connection_id", "state"),)

    connection_id: str = Field(primary_key=True, max_length=64)
    reference: str = Field(primary_key=True, max_length=140)
    """``Type/id`` in careloop."""
    patient_id: str = Field(max_length=64)
    state: str = Field(max_length=20)
    """A ``WriteState``."""
    ehr_reference: str | None = Field(default=None, max_length=140)
    version_synced: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class EhrFailure(SQLModel, table=True):
    """A write the EHR refused (4xx with an OperationOutcome); replayed after a fix."""

    __tablename__ = "ehr_failure"

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    connection_id: str = Field(max_length=64, index=True)
    patient_id: str = Field(max_length=64)
    references: str = Field(sa_column=Column(Text, nullable=False))
    status_code: int
    reason: str = Field(sa_column=Column(Text, nullable=False))
    """The EHR's OperationOutcome diagnostics (stored, never logged: it may echo data)."""
    failed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    replayed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class EhrImport(SQLModel, table=True):
    """A resource read from an EHR and its careloop copy."""

    __tablename__ = "ehr_import"

    connection_id: str = Field(primary_key=True, max_length=64)
    ehr_reference: str = Field(primary_key=True, max_length=140)
    reference: str = Field(max_length=140)
    ehr_version: str | None = Field(default=None, max_length=64)


class EhrCursor(SQLModel, table=True):
    """How far incremental pulls of one type from one EHR got (the EHR's lastUpdated)."""

    __tablename__ = "ehr_cursor"

    connection_id: str = Field(primary_key=True, max_length=64)
    resource_type: str = Field(primary_key=True, max_length=64)
    last_updated: str = Field(max_length=40)
