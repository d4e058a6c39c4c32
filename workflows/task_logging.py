"""Celery's per-task INFO lines for beat's frequent polls, at DEBUG.

Beat sends the outbox relay every 2 s; at INFO Celery logs three lines for each run (beat's
"Sending due task", the worker's "received" and "succeeded"), about 130,000 a day that say
nothing. A filter on Celery's loggers turns those lines, for the named tasks only, into DEBUG
records; every other task, and anything above INFO (a failure), is left as it is. The polls
log their real work themselves (messages published again, alerts escalated).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

CELERY_TASK_LOGGERS = (
    "celery.beat",  # Scheduler: Sending due task <entry> (<task>)
    "celery.worker.strategy",  # Task <task>[<id>] received
    "celery.app.trace",  # Task <task>[<id>] succeeded in ...
)


class QuietTasks(logging.Filter):
    """Demotes INFO records about the given tasks to DEBUG (dropped unless DEBUG is on)."""

    def __init__(self, tasks: Collection[str], logger: logging.Logger) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)
        self.logger = logger

    def _names_task(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict):  # celery.app.trace and the worker pass a context dict
            return args.get("name") in self.tasks
        if isinstance(args, tuple):  # beat passes (entry name, task name)
            return any(isinstance(a, str) and a in self.tasks for a in args)
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, demoted to DEBUG when it is about a quiet task."""
        if record.levelno != logging.INFO or not self._names_task(record):
            return True
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        # The logger let the record through at INFO; handlers check the new level themselves.
        return self.logger.isEnabledFor(logging.DEBUG)


def quiet_polling_logs(tasks: Collection[str]) -> None:
    """Log Celery's per-run lines about ``tasks`` at DEBUG (idempotent)."""
    for name in CELERY_TASK_LOGGERS:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, QuietTasks)]:
            logger.removeFilter(existing)
        logger.addFilter(QuietTasks(tasks, logger))
