"""careloop connected to the in-repo test EHR as a SMART Backend Services client."""

from __future__ import annotations

from typing import Any

from ehr_server import TestEHR
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from careloop.services.common.egress import destination_policy
from careloop.services.ehr.service import add_connection
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from support.clients import Caller


def connect_ehr(
    api: TestClient,
    engine: Engine,
    settings: Settings,
    caller: Caller,
    ehr: TestEHR,
    scope: str = "system/*.cruds",
    name: str = "hospital",
    **options: Any,
) -> str:
    """Register careloop's JWKS with ``ehr`` and add the caller's tenant's connection to it.

    ``options`` go to ``add_connection`` (launch client, secret key). Returns the EHR client id.
    """
    client_id = f"careloop-{caller.tenant}"
    ehr.register_client(client_id, scope, jwks=api.get("/.well-known/jwks.json").json())
    with session_scope(engine) as session:
        add_connection(
            session,
            name,
            ehr.base_url,
            client_id,
            scope,
            caller.tenant,
            destinations=destination_policy(settings),
            **options,
        )
    return client_id
