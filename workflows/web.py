"""The API application as ``careloop serve`` runs it: each commit's outbox relayed at once."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from careloop.services.app import create_app as create_api
from careloop.services.db import make_engine
from careloop.services.settings import Settings, get_settings
from careloop.services.telemetry import Role
from careloop.services.unit_of_work import OutboxHandoff
from careloop.workflows.celery_app import configure_celery
from careloop.workflows.outbox import Leases
from careloop.workflows.relay_thread import RelayThread
from careloop.workflows.routing import router_for, triage_for
from careloop.workflows.tasks import publish
from careloop.workflows.telemetry import start_tracing


def outbox_relay(settings: Settings, engine: Engine) -> OutboxHandoff:
    """Publish what a request's unit of work put in the outbox, off the request thread."""
    configure_celery(settings)
    relay_thread = RelayThread(
        engine, publish, Leases.from_settings(settings), router_for(settings)
    )
    return relay_thread.submit


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The careloop API for ``settings`` (default: from the environment).

    With ``relay_after_commit`` (the default) the outbox messages a request commits are
    published to the broker right away; otherwise beat's relay publishes them within seconds.
    """
    settings = settings or get_settings()
    start_tracing(settings, Role.api)  # off (nothing imported) unless configured
    engine = engine or make_engine(settings.resolved_database_url, settings.db_pool_size)
    handoff = outbox_relay(settings, engine) if settings.relay_after_commit else None
    return create_api(settings, engine, handoff, triage_for(settings))
