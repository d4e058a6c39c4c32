"""Logging for every careloop process (API, worker, beat): JSON lines through one redaction layer.

``configure_logging`` sets up the calling process; ``logging_config`` is the same setup as a
``logging.config.dictConfig`` dict, which uvicorn applies in each of its worker processes.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import threading
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

import orjson
import structlog
from structlog.typing import EventDict

from careloop.services.logs.redaction import describe_exception, redact_event

# Fields a stdlib record may carry as ``extra=``; anything else a library attaches (celery
# attaches its whole task context, traceback included) is never printed.
EXTRA_FIELDS = (
    "error_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "client_id",
    "task",
    "task_id",
)
# Libraries whose DEBUG/INFO output is noise or worse (httpcore logs raw request and response
# headers; SQLAlchemy logs statements and their parameters). The redaction layer covers them
# anyway; this keeps them out of the output at any careloop log level.
QUIET_LOGGERS = ("httpcore", "hpack", "sqlalchemy", "multipart", "watchfiles", "amqp")
_log = logging.getLogger("careloop.crash")


def _add_process(process: str) -> structlog.types.Processor:
    def add(_logger: object, _method: str, event: EventDict) -> EventDict:
        event.setdefault("process", process)
        return event

    return add


def _json_dumps(value: Any, default: Any = None) -> str:
    return orjson.dumps(value, default=default or str).decode()


def _pre_chain(process: str) -> list[structlog.types.Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        structlog.stdlib.ExtraAdder(allow=EXTRA_FIELDS),
        _add_process(process),
    ]


def formatter(fmt: str = "json", process: str = "careloop") -> logging.Formatter:
    """The formatter of every careloop handler: redaction, then a JSON (or console) line."""
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_json_dumps)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(process),
        processors=[
            redact_event,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
        # The template and its arguments go to the redaction layer separately: it formats the
        # message itself from redacted arguments.
        use_get_message=False,
        pass_foreign_args=True,
    )


def logging_config(
    level: str = "INFO", fmt: str = "json", process: str = "careloop"
) -> dict[str, Any]:
    """A dictConfig for one careloop process: one stderr handler, every logger through it."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "careloop": {
                "()": "careloop.services.logs.config.formatter",
                "fmt": fmt,
                "process": process,
            },
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "careloop",
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own handlers would print its records unredacted: send them to ours.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # careloop.access logs the route template; uvicorn's would print the query string
            # (serve turns it off; were it on, the redaction layer strips the query).
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # celery's own loggers, reset in case celery configured them before us
            "celery": {"level": level, "handlers": [], "propagate": True},
            "celery.task": {"level": level, "handlers": [], "propagate": True},
            "celery.redirected": {"level": level, "handlers": [], "propagate": True},
            **{
                name: {"level": "WARNING", "handlers": [], "propagate": True}
                for name in QUIET_LOGGERS
            },
        },
    }


def configure_logging(level: str = "INFO", fmt: str = "json", process: str = "careloop") -> None:
    """Route all of this process's logging (and uncaught errors) through the redaction layer."""
    logging.config.dictConfig(logging_config(level, fmt, process))
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_pre_chain(process),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    install_excepthooks()


def lockless_writer(
    logger: str, fmt: str = "json", process: str = "careloop"
) -> Callable[..., None]:
    """A ``say(message)`` for signal handlers: one redacted line to stderr, no logging locks."""
    line_formatter = formatter(fmt, process)

    def say(message: object, *_args: object, **_kwargs: object) -> None:
        record = logging.LogRecord(logger, logging.WARNING, __file__, 0, "%s", (message,), None)
        try:
            os.write(2, (line_formatter.format(record) + "\n").encode())
        except OSError:
            pass  # a notice lost on a closed stderr must not break the shutdown

    return say


def log_unhandled(exc: BaseException | None, where: str) -> str:
    """Log an error nothing else handled: its class and a fresh error id only. Returns the id."""
    error_id = uuid.uuid4().hex[:12]
    _log.error(
        "unhandled %s in %s (error id %s)",
        describe_exception(exc),
        where,
        error_id,
        extra={"error_id": error_id},
    )
    return error_id


def report_crash(exc: BaseException) -> int:
    """Log what ended a command (its class and an error id; settings errors by field and rule,
    never the value given) and return the exit status. Typer would print the traceback, with
    the exception's text and its frames' local variables."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            where = ".".join(str(part) for part in error["loc"])
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        _log.error("invalid configuration: %s", "; ".join(problems))
        return 2
    log_unhandled(exc, "the command")
    return 1


def install_excepthooks() -> None:
    """Uncaught errors (main thread, other threads, unraisable) log their class, not a traceback."""

    def main_hook(
        _type: type[BaseException], value: BaseException, _tb: TracebackType | None
    ) -> None:
        log_unhandled(value, "main thread")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "a thread"
        log_unhandled(args.exc_value, f"thread {name}")

    def unraisable_hook(unraisable: Any) -> None:
        log_unhandled(unraisable.exc_value, "a finalizer")

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
    sys.unraisablehook = unraisable_hook
