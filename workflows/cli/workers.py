"""``careloop worker`` and ``careloop beat``, and the embedded worker ``careloop serve`` starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from careloop.services.db import get_engine
from careloop.services.metrics.process_server import serve_process_metrics
from careloop.services.settings import Settings, get_settings
from careloop.services.telemetry import Role
from careloop.workflows import runtime
from careloop.workflows.celery_app import POLLING_TASKS, celery_app, configure_celery, queues
from careloop.workflows.task_logging import quiet_polling_logs
from careloop.workflows.telemetry import start_tracing, trace_worker
from careloop.workflows.worker_health import DEFAULT_INTERVAL_SECONDS, install_health_file


def _tune_embedded_broker(settings: Settings) -> None:
    # kombu's SQLAlchemy transport polls its queue table once a second by default, too slow for
    # alerts; it hands broker_transport_options to create_engine, so the interval is set here.
    if settings.resolved_broker_url.startswith("sqla+"):
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = 0.05
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def _exit_with_parent() -> None:
    # An embedded worker must not outlive `careloop serve`, however serve ends.
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        # The embedded worker leads its own process group (beat runs as a child process):
        # take the whole group down, not just this process.
        os.killpg(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="careloop-parent-watch", daemon=True).start()


def _log_through_careloop(process: str, level: str | None) -> str:
    """Configure this process's logging (celery's ``setup_logging`` then leaves it alone).

    Returns the log level chosen. Celery must also run with ``--quiet``: its banners go to
    stdout, past any logging.
    """
    from celery.signals import setup_logging

    from careloop.services.logs import configure_logging
    from careloop.services.logs.config import lockless_writer

    settings = get_settings()
    chosen = (level or settings.log_level).upper()

    def keep_careloop_logging(**_kwargs: object) -> None:
        configure_logging(chosen, settings.log_format, process)

    setup_logging.connect(keep_careloop_logging, weak=False)
    configure_logging(chosen, settings.log_format, process)
    quiet_polling_logs(POLLING_TASKS)
    # celery's signal handlers print their notices ("worker: Warm shutdown") on stdout, past
    # logging; write them as redacted lines instead.
    import celery.apps.worker

    celery.apps.worker.safe_say = lockless_writer(
        "celery.apps.worker", settings.log_format, process
    )
    return chosen


_KINDS = ("alerts", "ehr", "routine")


def _chosen_queues(settings: Settings, chosen: str) -> list[str]:
    """The broker queues of the kinds of work named in ``chosen``, alert work first."""
    kinds = {kind.strip() for kind in chosen.split(",") if kind.strip()}
    unknown = kinds - set(_KINDS)
    if unknown or not kinds:
        raise typer.BadParameter(f"choose from {', '.join(_KINDS)}", param_hint="--queues")
    return [name for kind, name in zip(_KINDS, queues(settings), strict=True) if kind in kinds]


def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once.")] = 4,
    pool: Annotated[str, typer.Option(help="prefork, threads or solo.")] = "threads",
    beat: Annotated[
        bool, typer.Option(help="Also run the beat scheduler in this process.")
    ] = False,
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: CARELOOP_LOG_LEVEL).")
    ] = None,
    exit_with_parent: Annotated[
        bool, typer.Option(help="Stop when the parent process ends (embedded use).")
    ] = False,
    queues_: Annotated[
        str,
        typer.Option(
            "--queues",
            help="Work to take, comma-separated: alerts, ehr, routine (e.g. a worker kept for"
            " alerts alone: --queues alerts).",
        ),
    ] = "alerts,ehr,routine",
    health_file: Annotated[
        Path | None,
        typer.Option(help="Keep this file while consuming, touched while connected (probes)."),
    ] = None,
    health_interval: Annotated[
        float, typer.Option(help="Seconds between touches of the health file.")
    ] = DEFAULT_INTERVAL_SECONDS,
) -> None:
    """Run a Celery worker on CARELOOP_BROKER_URL (or the embedded SQLite broker)."""
    settings = get_settings()
    chosen = _chosen_queues(settings, queues_)
    level = _log_through_careloop("worker", loglevel)
    if health_file is not None:
        install_health_file(celery_app, health_file, health_interval)
    if exit_with_parent:
        _exit_with_parent()
    serve_process_metrics(settings, "worker", port=not exit_with_parent)  # embedded: serve's
    _tune_embedded_broker(settings)
    configure_celery(settings)
    runtime.configure(settings, get_engine())
    trace_worker(settings, pool, get_engine())  # off unless configured (services/telemetry)
    argv = [
        "--quiet",
        "worker",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--loglevel={level}",
        "--without-gossip",
        "--without-mingle",
        # A node name of its own: workers sharing a host and a RabbitMQ vhost would otherwise
        # fight over the exclusive celery@host.celery.pidbox queue.
        f"--hostname=careloop-{os.getpid()}@%h",
        "-Q",
        ",".join(chosen),
    ]
    if beat:
        argv += ["--beat", f"--schedule={settings.data_dir / 'celerybeat-schedule'}"]
    celery_app.worker_main(argv)


def beat(
    loglevel: Annotated[
        str | None, typer.Option(help="Log level (default: CARELOOP_LOG_LEVEL).")
    ] = None,
) -> None:
    """Run the beat scheduler: outbox relay, escalations and missed check-ins."""
    level = _log_through_careloop("beat", loglevel)
    settings = get_settings()
    serve_process_metrics(settings, "beat")
    _tune_embedded_broker(settings)
    configure_celery(settings)
    start_tracing(settings, Role.beat)  # off unless configured (services/telemetry)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    celery_app.start(
        [
            "--quiet",
            "beat",
            f"--loglevel={level}",
            f"--schedule={settings.data_dir / 'celerybeat-schedule'}",
        ]
    )


def start_embedded_worker() -> subprocess.Popen[bytes]:
    """Start a worker with beat on the embedded broker, as a child in its own process group."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "careloop",
            "worker",
            "--beat",
            "--pool",
            "threads",
            "--exit-with-parent",
        ],
        start_new_session=True,
    )


def stop_embedded_worker(process: subprocess.Popen[bytes]) -> None:
    """Stop the embedded worker and its beat: warm shutdown, then kill what is left."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
