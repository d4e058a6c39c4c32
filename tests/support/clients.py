"""Authorised app clients of careloop's API: register a client in a tenant, fetch its token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope

ALL_SCOPES = "system/*.cruds"
BASE_URL = "http://testserver"


@dataclass
class Caller:
    """An app client of a fresh tenant, holding a bearer token."""

    http: TestClient
    client_id: str
    client_secret: str
    tenant: str
    token: str
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        """POST JSON with the bearer token."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.post(url, json=json, headers=headers, **kwargs)

    def patch(self, url: str, json: Any = None, **kwargs: Any) -> Any:
        """PATCH JSON with the bearer token."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.patch(url, json=json, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        """GET with the bearer token."""
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.http.get(url, headers=headers, **kwargs)


def token_for(http: httpx.Client, client_id: str, secret: str, scope: str | None = None) -> str:
    """An access token by client_secret_post (from the app in-process or served over HTTP)."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope:
        form["scope"] = scope
    response = http.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def make_caller(
    http: TestClient, engine: Engine, scope: str = ALL_SCOPES, tenant: str | None = None
) -> Caller:
    """Register a client (in a new tenant unless named) and fetch its token."""
    tenant = tenant or f"tenant-{uuid.uuid4().hex[:10]}"
    with session_scope(engine) as session:
        new = create_client(session, "test app", scope, tenant)
    assert new.client_secret is not None
    token = token_for(http, new.client_id, new.client_secret)
    return Caller(
        http, new.client_id, new.client_secret, tenant, token, {"Authorization": f"Bearer {token}"}
    )
