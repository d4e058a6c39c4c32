"""careloop's asymmetric signing keys, private halves encrypted at rest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class SigningKey(SQLModel, table=True):
    """One key pair; ``active`` keys sign, published keys appear in the JWKS."""

    __tablename__ = "signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=10)
    """RS384 or ES384"""
    private_key: str = Field(sa_column=Column(Text, nullable=False))
    """The private JWK, encrypted (Fernet) with a key derived from CARELOOP_SECRET_KEY."""
    public_jwk: str = Field(sa_column=Column(Text, nullable=False))
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When a newer key took over signing; the key stays published for a grace period."""
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Kept for old rows; no longer written (a key stops signing when rotated)."""
