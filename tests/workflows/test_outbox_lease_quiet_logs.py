"""Beat's polls (the outbox relay every 2 s, escalations every 15 s) log nothing at INFO.

Celery's own lines about them ("Sending due task", "received", "succeeded") are DEBUG; the
same lines about real work, and failures of the polls, keep their level. The records are made
by the very logging calls Celery's beat, worker and tracer make (the killed-worker test checks
the logs of real beat and worker processes too).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import celery.beat
import pytest
from celery.app import trace
from celery.worker import strategy

from careloop.workflows.celery_app import POLLING_TASKS
from careloop.workflows.task_logging import CELERY_TASK_LOGGERS, quiet_polling_logs


class Records(logging.Handler):
    """Keeps the records that reach handlers."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int) -> list[str]:
        """The messages logged at ``level``."""
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture(params=[logging.INFO, logging.DEBUG], ids=["info", "debug"])
def records(request: pytest.FixtureRequest) -> Iterator[tuple[Records, int]]:
    """Celery's task loggers at INFO (as ``--loglevel INFO`` sets) or DEBUG, captured."""
    quiet_polling_logs(POLLING_TASKS)  # as `careloop worker` and `careloop beat` do
    handler = Records()
    loggers = [logging.getLogger(name) for name in CELERY_TASK_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(request.param)
        logger.addHandler(handler)
    yield handler, request.param
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def _one_run(task: str, entry: str) -> None:
    """What beat, the worker and the tracer log for one scheduled run of ``task``."""
    celery.beat.info("Scheduler: Sending due task %s (%s)", entry, task)
    context = {"id": "x1", "name": task, "args": "()", "kwargs": "{}", "eta": None}
    strategy.logger.info(trace.LOG_RECEIVED, context, extra={"data": context})
    trace.info(
        trace.LOG_SUCCESS,
        {"id": "x1", "name": task, "return_value": "0", "runtime": 0.001, "args": "()"},
    )


def test_celery_lines_about_polls_are_debug(records: tuple[Records, int]) -> None:
    handler, level = records
    _one_run("outbox.relay", "outbox-relay")
    _one_run("alerts.escalate_due", "alerts-escalate")
    _one_run("checkins.scan", "checkins-scan")
    failure = {"id": "x2", "name": "outbox.relay", "description": "raised", "exc": "Boom()"}
    trace.logger.error(trace.LOG_FAILURE, failure)

    info = handler.lines(logging.INFO)
    assert info == [
        "Scheduler: Sending due task checkins-scan (checkins.scan)",
        "Task checkins.scan[x1] received",
        "Task checkins.scan[x1] succeeded in 0.001s: 0",
    ]
    assert handler.lines(logging.ERROR) == ["Task outbox.relay[x2] raised: Boom()"]
    debug = handler.lines(logging.DEBUG)
    if level == logging.DEBUG:  # turned on, the lines are there, at DEBUG
        assert debug == [
            "Scheduler: Sending due task outbox-relay (outbox.relay)",
            "Task outbox.relay[x1] received",
            "Task outbox.relay[x1] succeeded in 0.001s: 0",
            "Scheduler: Sending due task alerts-escalate (alerts.escalate_due)",
            "Task alerts.escalate_due[x1] received",
            "Task alerts.escalate_due[x1] succeeded in 0.001s: 0",
        ]
    else:
        assert debug == []
