"""``careloop tasks``: background work that failed for good, and replaying it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from careloop.services.cli.help import PlainTyper
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade
from careloop.services.unit_of_work import session_scope

tasks = PlainTyper(help="Background tasks: dead letters and replay.", no_args_is_help=True)


@tasks.command("dead")
def dead_tasks() -> None:
    """List tasks that failed their last try (ids and error classes only)."""
    from sqlmodel import select

    from careloop.services.outbox.models import DeadTask

    upgrade(get_engine())
    with session_scope(get_engine()) as session:
        rows = session.exec(select(DeadTask).where(DeadTask.replayed_at == None)).all()  # noqa: E711
        if not rows:
            typer.echo("no dead tasks")
        for row in rows:
            typer.echo(
                json.dumps(
                    {
                        "id": row.id,
                        "task": row.task,
                        "payload": json.loads(row.payload),
                        "error": row.error,
                        "attempts": row.attempts,
                        "failed_at": row.failed_at.isoformat(),
                    }
                )
            )


@tasks.command("replay")
def replay_task(
    dead_id: Annotated[int, typer.Argument(help="The dead task's id (from tasks dead).")],
) -> None:
    """Run a dead task again (after fixing its cause)."""
    from careloop.services.dead_letters import DeadTaskError, replay

    upgrade(get_engine())
    try:
        with session_scope(get_engine()) as session:
            replay(session, dead_id)
    except DeadTaskError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps({"replayed": dead_id}))
