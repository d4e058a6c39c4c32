"""``careloop serve``: the API, migrating first, with an embedded worker unless a broker is set."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from careloop.services.db import get_engine
from careloop.services.metrics.multiprocess import start_run
from careloop.services.migrate import upgrade
from careloop.services.settings import get_settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.cli.workers import start_embedded_worker, stop_embedded_worker


def _check_stored_secrets() -> None:
    from careloop.services.keys.rekey import StoredSecretsError, check_stored_secrets

    try:
        with session_scope(get_engine()) as session:
            check_stored_secrets(session, get_settings())
    except StoredSecretsError as exc:
        typer.echo(f"careloop: {exc}", err=True)
        raise typer.Exit(2) from exc


def _use_base_url_of(host: str, port: int) -> None:
    # Through the environment, so uvicorn's worker processes and the embedded worker and beat
    # (which build alert links) see the same base URL as this process.
    from careloop.services.cli.base_url import BaseUrlError, derive_base_url

    try:
        url, warning = derive_base_url(get_settings(), host, port)
    except BaseUrlError as exc:
        typer.echo(f"careloop serve: {exc}", err=True)
        raise typer.Exit(2) from exc
    if warning:
        logging.getLogger("careloop.serve").warning(warning)
    os.environ["CARELOOP_BASE_URL"] = url
    get_settings.cache_clear()
    logging.getLogger("careloop.serve").info("public base URL %s", url)


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="API worker processes.")] = 1,
) -> None:
    """Run the API (migrating the database first)."""
    import uvicorn

    from careloop.services.logs import configure_logging, logging_config

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format, "api")
    _use_base_url_of(host, port)
    settings = get_settings()
    upgrade(get_engine())
    _check_stored_secrets()
    start_run(settings.metrics_dir, settings.data_dir)  # API workers and embedded worker share it
    embedded = None if get_settings().broker_url else start_embedded_worker()
    if embedded is not None:  # for /readyz in the API processes (uvicorn's workers inherit it)
        os.environ["CARELOOP_EMBEDDED_WORKER_PID"] = str(embedded.pid)
        get_settings.cache_clear()
    try:
        uvicorn.run(
            "careloop.workflows.web:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            # uvicorn applies this in every API process: its loggers go through the redaction
            # layer; its access log stays off (careloop.access logs route templates instead).
            log_config=logging_config(settings.log_level, settings.log_format, "api"),
            log_level=settings.log_level.lower(),
            access_log=False,
            # A new worker imports careloop before it can answer the supervisor's ping: several
            # seconds on a busy machine, and uvicorn's 5 s default then kills it over and over.
            timeout_worker_healthcheck=30,
        )
    finally:
        if embedded is not None:
            stop_embedded_worker(embedded)
