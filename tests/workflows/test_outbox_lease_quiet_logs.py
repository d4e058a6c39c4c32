"""Beat's polls (the outbox relay every 2 s, escalations every 15 s) log nothing at INFO.

Celery's own lines about them ("Sending due task", "received", "succeeded") are DEBUG; the
same lines about real work, and failures of the polls, keep their level.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery import Celery
from celery.app.trace import LOG_RECEIVED
from celery.beat import ScheduleEntry, Scheduler

import careloop.workflows.celery_app  # noqa: F401  (installs the filter, as every process does)
from careloop.workflows.task_logging import CELERY_TASK_LOGGERS


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


@pytest.fixture
def app() -> Iterator[Celery]:
    """A Celery app of its own on the in-memory broker, with a poll and a real task."""
    app = Celery("quiet-test", broker="memory://")
    app.conf.task_ignore_result = True

    @app.task(name="outbox.relay", shared=False)
    def relay() -> int:
        return 0

    @app.task(name="observation.evaluate", shared=False)
    def evaluate() -> list[str]:
        return []

    @app.task(name="alerts.escalate_due", shared=False)
    def escalate_due() -> int:
        raise RuntimeError("database down")

    yield app
    app.close()


def test_celery_lines_about_polls_are_debug(records: tuple[Records, int], app: Celery) -> None:
    handler, level = records
    scheduler = Scheduler(app, lazy=True)
    for name, task in (("outbox-relay", "outbox.relay"), ("ehr-pull", "observation.evaluate")):
        scheduler.apply_entry(ScheduleEntry(name=name, task=task, schedule=2.0, app=app))
    strategy = logging.getLogger("celery.worker.strategy")
    for task in ("outbox.relay", "observation.evaluate"):
        context = {"id": "x1", "name": task, "args": "()", "kwargs": "{}", "eta": None}
        strategy.info(LOG_RECEIVED, context, extra={"data": context})  # as the worker does
        app.tasks[task].apply()  # Celery's tracer logs "succeeded"
    app.tasks["alerts.escalate_due"].apply()  # a poll failing is logged at ERROR as before

    info = handler.lines(logging.INFO)
    assert "Scheduler: Sending due task ehr-pull (observation.evaluate)" in info
    assert "Task observation.evaluate[x1] received" in info
    assert any(
        line.startswith("Task observation.evaluate[") and "succeeded" in line for line in info
    )
    assert not [line for line in info if "outbox" in line]
    errors = handler.lines(logging.ERROR)
    assert any("alerts.escalate_due" in line and "RuntimeError" in line for line in errors)
    debug = handler.lines(logging.DEBUG)
    quiet = [
        "Scheduler: Sending due task outbox-relay (outbox.relay)",
        "Task outbox.relay[x1] received",
    ]
    if level == logging.DEBUG:  # turned on, the lines are there, at DEBUG
        assert all(line in debug for line in quiet)
        assert any(line.startswith("Task outbox.relay[") and "succeeded" in line for line in debug)
    else:
        assert not [line for line in debug if "outbox.relay" in line]
