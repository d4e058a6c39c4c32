"""Tables of the FHIR resource store: current versions, history and search index."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Integer, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime

ID_LENGTH = 64
"""Resource ids, types, tenants and patient ids (a FHIR id is at most 64 characters)."""
TOKEN_LENGTH = 300
"""A search token's system and code (identifier values, codes, references)."""

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class FhirResource(SQLModel, table=True):
    """The current version of one FHIR resource, with the columns searches filter and sort on."""

    __tablename__ = "fhir_resource"
    __table_args__ = (
        Index("ix_fhir_resource_type_id", "resource_type", "id", unique=True),
        Index("ix_fhir_resource_patient", "tenant_id", "resource_type", "patient_id", "date_lo"),
        # a patient's search in seq order stops after one page, however long their history
        Index("ix_fhir_resource_patient_seq", "tenant_id", "resource_type", "patient_id", "seq"),
        Index("ix_fhir_resource_updated", "tenant_id", "resource_type", "last_updated"),
    )

    seq: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    tenant_id: str = Field(max_length=64)
    resource_type: str = Field(max_length=64)
    id: str = Field(max_length=64)
    version_id: int
    last_updated: datetime = Field(sa_type=UTCDateTime)
    patient_id: str | None = Field(default=None, max_length=ID_LENGTH)
    date_lo: datetime | None = Field(default=None, sa_type=UTCDateTime)
    date_hi: datetime | None = Field(default=None, sa_type=UTCDateTime)
    content: str = Field(sa_column=Column(Text, nullable=False))


class FhirResourceHistory(SQLModel, table=True):
    """A superseded version of a resource (the current one lives in ``fhir_resource``)."""

    __tablename__ = "fhir_resource_history"

    resource_type: str = Field(primary_key=True, max_length=64)
    id: str = Field(primary_key=True, max_length=64)
    version_id: int = Field(primary_key=True)
    tenant_id: str = Field(max_length=64)
    last_updated: datetime = Field(sa_type=UTCDateTime)
    content: str = Field(sa_column=Column(Text, nullable=False))


class SearchToken(SQLModel, table=True):
    """One token (code, identifier, reference, status) a resource can be searched by."""

    __tablename__ = "search_token"
    __table_args__ = (
        # code (and system) then resource_seq: a token search walks its matches in seq order
        # and a page stops after ``_count`` rows instead of joining every match
        Index(
            "ix_search_token_code_seq",
            "tenant_id",
            "resource_type",
            "param",
            "code",
            "resource_seq",
            "system",
        ),  # fmt: skip
    )

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    resource_seq: int = Field(sa_column=Column(SeqType, nullable=False, index=True))
    tenant_id: str = Field(max_length=64)
    resource_type: str = Field(max_length=64)
    param: str = Field(max_length=64)
    system: str = Field(default="", max_length=TOKEN_LENGTH)
    code: str = Field(max_length=TOKEN_LENGTH)
