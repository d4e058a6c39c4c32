"""Which careloop Patient an app's patient identifier belongs to."""

from __future__ import annotations

from sqlmodel import Field, SQLModel


class PatientIdentifier(SQLModel, table=True):
    """One identifier (system, value) of one patient; unique within a tenant."""

    __tablename__ = "patient_identifier"

    tenant_id: str = Field(primary_key=True, max_length=64)
    system: str = Field(primary_key=True, max_length=300)
    value: str = Field(primary_key=True, max_length=200)
    patient_id: str = Field(max_length=64, index=True)
