"""The administrative commands of ``careloop``: migrate, clients, keys, alert routes, EHRs,
CDS clients, the audit trail and the de-identified research export.

The commands that run workflows (serve, worker, beat, demo, ``ehr pull``) are added to these by
``careloop.workflows.cli``, which is the ``careloop`` console script.
"""

from __future__ import annotations

import typer
from pydantic import ValidationError

from careloop.services.cli.audit import audit
from careloop.services.cli.cds import cds
from careloop.services.cli.clients import clients
from careloop.services.cli.clinicians import clinicians
from careloop.services.cli.dead_letters import tasks
from careloop.services.cli.ehr import ehr, keys, patients
from careloop.services.cli.export import export_cmd
from careloop.services.cli.help import PlainTyper
from careloop.services.cli.notify import notify
from careloop.services.db import get_engine
from careloop.services.migrate import upgrade

app = PlainTyper(
    help="careloop: symptom reports and telehealth in, FHIR R4 out.", no_args_is_help=True
)
app.add_typer(clients, name="clients")
app.add_typer(clinicians, name="clinicians")
app.add_typer(notify, name="notify")
app.add_typer(tasks, name="tasks")
app.add_typer(ehr, name="ehr")
app.add_typer(patients, name="patients")
app.add_typer(keys, name="keys")
app.add_typer(cds, name="cds")
app.add_typer(audit, name="audit")
app.command("export")(export_cmd)


@app.command()
def migrate() -> None:
    """Bring the database to the newest schema."""
    if upgrade(get_engine()):
        typer.echo("database is at the newest schema")
    else:
        typer.echo("database is at a newer schema than this release: left as it is")


def _configuration_errors(exc: ValidationError) -> str:
    # Only the messages and field names: pydantic's own text repeats the input values, which
    # would print secrets.
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        where = f"CARELOOP_{field.upper()}: " if field else ""
        lines.append(f"careloop: configuration error: {where}{message}")
    return "\n".join(lines)


def run(cli: typer.Typer) -> None:
    """Run the command line ``cli``, reporting configuration errors and crashes without PHI."""
    try:
        cli()
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        typer.echo(_configuration_errors(exc), err=True)
        raise SystemExit(2) from None
    except Exception as exc:  # what a command did not handle, as careloop logs it (no PHI)
        from careloop.services.logs.config import report_crash

        raise SystemExit(report_crash(exc)) from None
