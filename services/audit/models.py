"""The audit trail: who sent or read what, where, why and with what outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow
from careloop.services.store.models import SeqType


class AuditRecord(SQLModel, table=True):
    """One audited event, shaped after FHIR AuditEvent (served as one on request)."""

    __tablename__ = "audit_record"
    __table_args__ = (
        Index("ix_audit_tenant_at", "tenant_id", "recorded"),
        Index("ux_audit_tenant_seq", "tenant_id", "seq", unique=True),
    )

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    tenant_id: str = Field(max_length=64)
    recorded: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    kind: str = Field(max_length=30)
    """egress | access"""
    action: str = Field(max_length=1)
    """FHIR AuditEvent action: C R U D E"""
    agent: str = Field(max_length=200)
    """The client, worker or clinician acting."""
    purpose: str = Field(default="", max_length=30)
    entity: str = Field(sa_column=Column(Text, nullable=False))
    """Space-separated references concerned (ids only)."""
    destination: str = Field(default="", max_length=300)
    """Channel and host, never a full URL with a query."""
    outcome: str = Field(max_length=30)
    """success | blocked | failed | refused (a destination the egress rules do not allow)"""
    seq: int | None = Field(default=None, sa_type=BigInteger)
    """Position in the tenant's chain, from 1; set as the record is flushed (chain.py)."""
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)
    """SHA-256 over the chained fields and ``prev_hash`` (chain.canonical)."""


class AuditCheckpoint(SQLModel, table=True):
    """A signed statement that a tenant's chain had ``hash`` at ``seq`` at ``created``."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = (Index("ix_audit_checkpoint_tenant_seq", "tenant_id", "seq"),)

    id: int | None = Field(
        default=None, sa_column=Column(SeqType, primary_key=True, autoincrement=True)
    )
    tenant_id: str = Field(max_length=64)
    seq: int
    hash: str = Field(max_length=64)
    created: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    jws: str = Field(sa_column=Column(Text, nullable=False))
    """Compact JWS (careloop signing key) of tenant, seq, hash, iat; the payload is what counts."""


# Chains every AuditRecord as it is flushed (a listener registered on import).
import careloop.services.audit.chain  # noqa: E402, F401
