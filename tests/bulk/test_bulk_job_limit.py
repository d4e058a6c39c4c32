"""Two kick-offs of one client at once count in turn: the active-job limit holds under a race.

On PostgreSQL the test tells the lock's absence apart (the second would count 0 and start); on
SQLite the first's write lock blocks the second either way, so there it checks the outcome.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session
from support.clients import Caller
from support.patient_data import tenant_id

from careloop.services.auth.scopes import Grant, parse_scopes
from careloop.services.auth.tokens import Principal
from careloop.services.bulk.jobs import Scope, start_export
from careloop.services.bulk.models import ExportLevel
from careloop.services.bulk.params import KickOff
from careloop.services.common.errors import ApiError
from careloop.services.settings import Settings
from careloop.services.unit_of_work import commit

KICKOFF = KickOff(types=("Patient",), since=None)


def _principal(engine: Engine, caller: Caller) -> Principal:
    scope = "system/*.read"
    return Principal(
        caller.client_id, tenant_id(engine, caller), scope, Grant(tuple(parse_scopes(scope))), 0
    )


def _start(session: Session, settings: Settings, principal: Principal) -> str:
    job = start_export(
        session, settings, principal, Scope(ExportLevel.SYSTEM), KICKOFF, "http://x/$export"
    )
    return job.id


def _waits_briefly(session: Session) -> None:
    """Make a blocked statement of ``session`` fail at once instead of waiting its turn."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA busy_timeout=50")
    else:
        connection.exec_driver_sql("SET lock_timeout = '50ms'")


def test_a_second_kick_off_waits_for_the_first_and_then_finds_the_limit_reached(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    settings = bulk_settings.model_copy(update={"bulk_export_max_active_jobs": 1})
    principal = _principal(engine, exporter)
    with Session(engine) as first, Session(engine) as second:
        _start(first, settings, principal)  # counted and recorded, not yet committed
        _waits_briefly(second)
        # Without the lock the second would count 0 (the first is uncommitted) and start too.
        with pytest.raises(DBAPIError):
            _start(second, settings, principal)
        second.rollback()
        commit(first)
    with Session(engine) as third, pytest.raises(ApiError) as refused:
        _start(third, settings, principal)
    assert refused.value.status == 429
