"""Creating tenants and app clients."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from sqlmodel import Session, select

from careloop.services.auth.passwords import hash_secret
from careloop.services.auth.scopes import parse_scopes
from careloop.services.tenancy.models import AppClient, Tenant

DEFAULT_TENANT = "default"


def get_or_create_tenant(session: Session, name: str = DEFAULT_TENANT) -> Tenant:
    """The tenant called ``name``, created if new."""
    tenant = session.exec(select(Tenant).where(Tenant.name == name)).first()
    if tenant is None:
        tenant = Tenant(
            id=name if name == DEFAULT_TENANT else "t_" + secrets.token_hex(8), name=name
        )
        session.add(tenant)
        session.flush()
    return tenant


@dataclass(frozen=True)
class NewClient:
    """A created client; the secret is shown once and only its hash is stored."""

    client_id: str
    client_secret: str | None
    tenant_id: str
    scope: str


def create_client(
    session: Session,
    name: str,
    scope: str,
    tenant_name: str = DEFAULT_TENANT,
    jwks: dict[str, object] | None = None,
    jwks_url: str | None = None,
) -> NewClient:
    """Register an app client; with ``jwks``/``jwks_url`` it authenticates by private_key_jwt."""
    parse_scopes(scope)  # refuse malformed scopes early
    tenant = get_or_create_tenant(session, tenant_name)
    client_id = "cl_" + secrets.token_urlsafe(12)
    secret = None if (jwks or jwks_url) else secrets.token_urlsafe(32)
    session.add(
        AppClient(
            client_id=client_id,
            tenant_id=tenant.id,
            name=name,
            scopes=" ".join(scope.split()),
            secret_hash=hash_secret(secret) if secret else None,
            jwks=json.dumps(jwks) if jwks else None,
            jwks_url=jwks_url,
        )
    )
    session.flush()
    return NewClient(client_id, secret, tenant.id, " ".join(scope.split()))
