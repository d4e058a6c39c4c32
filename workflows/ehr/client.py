"""The FHIR client for one EHR connection: SMART Backend Services tokens over the egress client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlmodel import Session

from careloop.integrations.ehr.fhir_client import FhirClient
from careloop.integrations.ehr.smart import discover, tokens
from careloop.services.common.egress import egress_client
from careloop.services.ehr.models import EhrConnection
from careloop.services.keys.service import signing_key
from careloop.services.settings import Settings


@contextmanager
def ehr_client(
    session: Session, settings: Settings, connection: EhrConnection
) -> Iterator[FhirClient]:
    """A FHIR client for ``connection`` with SMART Backend Services tokens.

    Every request (discovery, tokens, reads, writes) goes through the egress client: the
    process's pooled connections, each to an address the egress rules allow.
    """
    http = egress_client(session, settings, connection.tenant_id, "ehr", "careloop-worker")
    if connection.token_endpoint is None:
        connection.token_endpoint = discover(http, connection.fhir_base_url).token_endpoint
        session.add(connection)
    token_endpoint = connection.token_endpoint

    def get_token(force: bool) -> str:
        if force:
            tokens.invalidate(connection.id)
        return tokens.token(
            connection.id,
            http,
            token_endpoint,
            connection.client_id,
            connection.scope,
            connection.alg,
            lambda alg: signing_key(session, settings.secret_key, alg),
        )

    yield FhirClient(connection.fhir_base_url, http, get_token)
