"""careloop's egress boundary configured from settings: destination rules and clients."""

from __future__ import annotations

from functools import lru_cache

from sqlmodel import Session

from careloop.integrations.egress import DestinationPolicy, EgressClient, EgressHttp, shared
from careloop.services.audit.egress_guard import session_guard
from careloop.services.consents.policy import tenant_defaults
from careloop.services.settings import Environment, Settings


@lru_cache(maxsize=16)
def _policy(production: bool, allow: str, allow_loopback: bool | None) -> DestinationPolicy:
    return DestinationPolicy.create(
        production=production, allow=allow, allow_loopback=allow_loopback
    )


def destination_policy(settings: Settings) -> DestinationPolicy:
    """The destination rules for ``settings`` (environment, ``egress_allow``, loopback)."""
    return _policy(
        settings.environment == Environment.production,
        settings.egress_allow,
        settings.egress_allow_loopback,
    )


def egress_http(settings: Settings) -> EgressHttp:
    """The process's pooled outbound HTTP under ``settings``' rules."""
    return shared(destination_policy(settings))


def egress_client(
    session: Session,
    settings: Settings,
    tenant_id: str,
    channel: str,
    agent: str,
    timeout: float | None = None,
) -> EgressClient:
    """An egress client for one unit of work: consent read and audit written on ``session``.

    ``timeout`` (seconds per request) defaults to ``ehr_timeout_seconds``.
    """
    return EgressClient(
        egress_http(settings),
        session_guard(
            session, tenant_id, agent, tenant_defaults(settings.consent_defaults, tenant_id)
        ),
        channel,
        settings.ehr_timeout_seconds if timeout is None else timeout,
    )
