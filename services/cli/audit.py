"""``careloop audit``: sign a checkpoint of the audit chain, verify the chain."""

from __future__ import annotations

from typing import Annotated

import typer

from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope

audit = PlainTyper(help="The audit trail: checkpoints and verification.", no_args_is_help=True)


@audit.command("checkpoint")
def checkpoint_cmd() -> None:
    """Sign a checkpoint of every tenant's chain that grew since its last one."""
    from careloop.services.audit.checkpoints import checkpoint_all

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        made = [(c.tenant_id, c.seq) for c in checkpoint_all(session, get_settings().secret_key)]
    for tenant_id, seq in made:
        typer.echo(f"checkpoint tenant={tenant_id} seq={seq}")
    if not made:
        typer.echo("no chain grew since its last checkpoint")


@audit.command("verify")
def verify_cmd(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant id.")] = None,
) -> None:
    """Recompute every chain and check the checkpoints; exit 1 at the first bad entry."""
    from careloop.services.audit.verify import verify

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        results = verify(session, tenant)
    bad = 0
    for result in results:
        if result.problem is None:
            typer.echo(
                f"ok tenant={result.tenant_id} entries={result.entries}"
                f" checkpoints={result.checkpoints}"
            )
        else:
            bad += 1
            typer.echo(f"FAILED {result.problem}", err=True)
    if bad:
        raise typer.Exit(1)
