"""``careloop worker --queues``: a worker kept for one kind of work (alerts alone, say)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from careloop.services.settings import Settings
from careloop.workflows.celery_app import ehr_queue, urgent_queue
from careloop.workflows.cli.main import app
from careloop.workflows.cli.workers import _chosen_queues


def test_every_kind_by_default_alert_work_first(settings: Settings) -> None:
    chosen = _chosen_queues(settings, "routine,ehr,alerts")
    assert chosen == [urgent_queue(settings), ehr_queue(settings), settings.queue]


def test_a_worker_for_alerts_alone(settings: Settings) -> None:
    assert _chosen_queues(settings, " alerts ") == [urgent_queue(settings)]
    assert _chosen_queues(settings, "ehr,routine") == [ehr_queue(settings), settings.queue]


@pytest.mark.parametrize("chosen", ["", "urgent", "alerts,bulk", ","])
def test_unknown_or_no_kinds_are_refused(settings: Settings, chosen: str) -> None:
    with pytest.raises(typer.BadParameter):
        _chosen_queues(settings, chosen)


def test_the_command_refuses_an_unknown_kind_before_starting() -> None:
    result = CliRunner().invoke(app, ["worker", "--queues", "everything"])
    assert result.exit_code == 2
    assert "--queues" in result.output
