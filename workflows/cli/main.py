"""The ``careloop`` console script: ``services``' commands and the ones that run workflows."""

from __future__ import annotations

from careloop.services.cli.ehr import ehr
from careloop.services.cli.main import app, run
from careloop.workflows.cli.demo import demo
from careloop.workflows.cli.ehr_pull import ehr_pull
from careloop.workflows.cli.serve import serve
from careloop.workflows.cli.workers import beat, worker

# Process commands: not audited as commands; what they serve and run is, as it happens.
app.command(audit=False)(serve)
app.command(audit=False)(worker)
app.command(audit=False)(beat)
app.command()(demo)
ehr.command("pull")(ehr_pull)


def main() -> None:
    """Entry point of the ``careloop`` console script (and ``python -m careloop``)."""
    run(app)
