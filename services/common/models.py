"""Tables shared by the API domains."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class IdempotencyRecord(SQLModel, table=True):
    """The response given to one Idempotency-Key, replayed for a retry with the same body."""

    __tablename__ = "idempotency_record"

    tenant_id: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    status_code: int
    response_body: str = Field(sa_column=Column(Text, nullable=False))
    location: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
