"""``careloop ehr pull``: run one pull from an EHR now, in this process."""

from __future__ import annotations

import json

import typer

from careloop.services.cli.ehr import EhrName, TenantOpt, fail, tenant_id_named
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.ehr.pull import pull


def ehr_pull(name: EhrName, tenant: TenantOpt = "default") -> None:
    """Read care plans, goals, care teams and Task status from the EHR now."""
    from careloop.services.ehr.service import ConnectionError_, find_connection

    engine = get_engine()
    upgrade(engine)
    try:
        with session_scope(engine) as session:
            connection = find_connection(session, tenant_id_named(session, tenant), name)
            assert connection is not None
            result = pull(session, get_settings(), connection)
    except ConnectionError_ as exc:
        fail(exc.message)
    typer.echo(
        json.dumps(
            {
                "imported": result.imported,
                "skipped": result.skipped,
                "tasks_applied": result.tasks_applied,
            }
        )
    )
