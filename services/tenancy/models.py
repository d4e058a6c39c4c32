"""Tenants (organizations) and the app clients that call careloop on their behalf."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from careloop.services.db import UTCDateTime, utcnow


class Tenant(SQLModel, table=True):
    """An organization; no client ever sees another tenant's data."""

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AppClient(SQLModel, table=True):
    """An OAuth client (an app or a system) of one tenant, with the scopes it may be granted."""

    __tablename__ = "app_client"

    client_id: str = Field(primary_key=True, max_length=64)
    tenant_id: str = Field(foreign_key="tenant.id", index=True, max_length=64)
    name: str = Field(max_length=200)
    scopes: str = Field(sa_column=Column(Text, nullable=False))
    secret_hash: str | None = Field(default=None, max_length=300)
    jwks: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    jwks_url: str | None = Field(default=None, max_length=2000)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UsedAssertion(SQLModel, table=True):
    """A client-assertion ``jti`` already used; a replay is refused until it expires."""

    __tablename__ = "used_assertion"

    client_id: str = Field(primary_key=True, max_length=64)
    jti: str = Field(primary_key=True, max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
