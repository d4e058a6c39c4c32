"""``/healthz`` (the process is alive) and ``/readyz`` (ready for traffic), for load balancers.

Neither needs authentication, counts against a rate limit or appears in the OpenAPI schema, and
neither reveals anything: ``/healthz`` answers a constant, ``/readyz`` the name and state of each
check (``ok``, ``skipped``, or what failed), never a host, a URL, an error's text or a version.

``/readyz`` checks, each bounded by a short timeout so a probe never hangs:

- ``database``: ``SELECT 1`` answers;
- ``schema``: the database is at the migrations' head, or *ahead* of it (a revision this code
  does not know: a newer release migrated it, as in a rolling upgrade or a rollback; careloop's
  migrations keep the schema usable by the release before, see ``services/migrate.py``).
  *Behind* (not yet migrated) is unready. Once current it is not read again until restart;
- ``broker``: with ``CARELOOP_BROKER_URL``, a connection to it opens (the result is kept a few
  seconds, so probes do not hammer the broker); on the embedded broker, the embedded worker
  ``careloop serve`` started is alive (skipped when this process was not started by serve).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from kombu.connection import Connection
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from starlette.responses import JSONResponse, Response

from careloop.services.common.errors import Issue, outcome_response
from careloop.services.migrate import alembic_config
from careloop.services.settings import Settings

log = logging.getLogger("careloop.health")

CHECK_TIMEOUT_SECONDS = 2.0
"""The longest one check may take before it counts as failed."""
BROKER_CACHE_SECONDS = 5.0
"""How long a broker check's result is reused."""

router = APIRouter(include_in_schema=False)


class CheckFailed(Exception):
    """A readiness check failed; ``str()`` is a short, safe reason (no host, URL or secret)."""


@dataclass
class Readiness:
    """The readiness checks of one API process (kept on ``app.state``)."""

    engine: Engine
    broker_url: str = ""
    embedded_worker_pid: int = 0
    timeout: float = CHECK_TIMEOUT_SECONDS
    broker_cache_seconds: float = BROKER_CACHE_SECONDS
    _schema_current: bool = False
    _schema_state: str | None = None
    _broker_result: tuple[float, str | None] | None = None
    _last_failures: tuple[str, ...] = ()
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: Future[dict[str, str | CheckFailed]] | None = None
    _running: str = "database"

    @classmethod
    def for_app(cls, settings: Settings, engine: Engine) -> Readiness:
        """The checks for an app with ``settings`` on ``engine``."""
        return cls(engine, settings.broker_url, settings.embedded_worker_pid)

    @cached_property
    def migrations(self) -> tuple[str, frozenset[str]]:
        """The head of careloop's migrations and every revision they know (read once)."""
        script = ScriptDirectory.from_config(alembic_config())
        heads = script.get_heads()
        if len(heads) != 1:
            raise RuntimeError(f"careloop's migrations have {len(heads)} heads")
        return heads[0], frozenset(rev.revision for rev in script.walk_revisions())

    # -- the checks: each returns its state ("ok", "skipped") or raises CheckFailed --

    @cached_property
    def probe_engine(self) -> Engine:
        """The engine the database check uses: on PostgreSQL a connection of its own per check,
        its connecting and unacknowledged sends bounded (the app's pool would wait as long as
        the kernel lets it on a host that stopped answering), closed after the check so nothing
        is left open; on SQLite, the app's."""
        if self.engine.dialect.name != "postgresql":
            return self.engine
        return create_engine(
            self.engine.url,
            poolclass=NullPool,
            hide_parameters=True,
            connect_args={
                "connect_timeout": max(2, math.ceil(self.timeout)),  # libpq's least is 2 s
                "tcp_user_timeout": int(self.timeout * 1000),
            },
        )

    def check_database(self) -> str:
        """``SELECT 1`` answers; then, until it once was, that the schema is at head."""
        try:
            with self.probe_engine.connect() as connection:
                if connection.dialect.name == "postgresql":
                    ms = int(self.timeout * 1000)
                    connection.execute(text(f"SET LOCAL statement_timeout = {ms}"))
                connection.execute(text("SELECT 1"))
                if self._schema_current:
                    return "ok"
                if not inspect(connection).has_table("alembic_version"):
                    self._schema_state = "behind"  # never migrated
                    return "ok"
                versions = connection.execute(text("SELECT version_num FROM alembic_version"))
                self._schema_state = self._compare(set(versions.scalars()))
        except SQLAlchemyError as exc:
            raise CheckFailed(f"unreachable ({type(exc).__name__})") from None
        return "ok"

    def _compare(self, versions: set[str]) -> str:
        head, known = self.migrations
        if versions == {head}:
            self._schema_current = True
            return "ok"
        if versions - known:
            return "ahead"  # a schema newer than this code: a rolled-back deploy
        return "behind"

    def check_schema(self) -> str:
        """The schema state the last database check read."""
        if self._schema_current:
            return "ok"
        state = self._schema_state
        if state is None:
            return "not checked"  # the database did not answer (that check failed)
        if state == "ahead":
            return "ahead"  # a newer release migrated it: still usable by this one
        raise CheckFailed("behind this code's migrations (run careloop migrate)")

    def check_broker(self) -> str:
        """The broker accepts a connection (cached a few seconds), or the embedded worker lives."""
        if not self.broker_url:
            if not self.embedded_worker_pid:
                return "skipped"
            if not process_alive(self.embedded_worker_pid):
                raise CheckFailed("the embedded worker is not running")
            return "ok"
        now = time.monotonic()
        cached = self._broker_result
        if cached is None or now - cached[0] >= self.broker_cache_seconds:
            cached = (now, self._connect_broker())
            self._broker_result = cached
        if cached[1] is not None:
            raise CheckFailed(cached[1])
        return "ok"

    def _connect_broker(self) -> str | None:
        # Every socket operation bounded, the handshake and Redis's PING included.
        options = (
            {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout}
            if self.broker_url.startswith(("redis", "rediss"))
            else {"read_timeout": self.timeout, "write_timeout": self.timeout}
        )
        connection = Connection(  # type: ignore[no-untyped-call]
            self.broker_url, connect_timeout=self.timeout, transport_options=options
        )
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=self.timeout)  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001 (any failure to connect means unready)
            return f"unreachable ({type(exc).__name__})"
        finally:
            connection.release()  # type: ignore[no-untyped-call]
        return None

    async def run(self) -> dict[str, str | CheckFailed]:
        """Every check's state or failure; a check that takes too long counts as failed.

        The checks run one after another in a thread of their own, one run at a time: a probe
        arriving while a run is under way waits for that run. A database or broker that hangs
        holds that one thread, never the request handlers'.
        """
        with self._lock:
            if self._inflight is None or self._inflight.done():
                self._inflight = self._start_run()
            inflight = self._inflight
        try:
            results = await asyncio.wait_for(
                asyncio.shield(asyncio.wrap_future(inflight)), self.timeout * 2
            )
        except TimeoutError:
            results = {self._running: CheckFailed("timed out")}
        self._log_changes(results)
        return results

    def _start_run(self) -> Future[dict[str, str | CheckFailed]]:
        # A daemon thread: a check stuck on a dead host must not hold up the process's exit.
        future: Future[dict[str, str | CheckFailed]] = Future()

        def work() -> None:
            try:
                future.set_result(self._run_checks())
            except BaseException as exc:  # noqa: BLE001 (handed to the awaiting probe)
                future.set_exception(exc)

        threading.Thread(target=work, name="careloop-readyz", daemon=True).start()
        return future

    def _run_checks(self) -> dict[str, str | CheckFailed]:
        results: dict[str, str | CheckFailed] = {}
        self._schema_state = None
        for name, check in (
            ("database", self.check_database),
            ("schema", self.check_schema),
            ("broker", self.check_broker),
        ):
            self._running = name
            try:
                results[name] = check()
            except CheckFailed as failed:
                results[name] = failed
        return results

    def _log_changes(self, results: dict[str, str | CheckFailed]) -> None:
        failures = tuple(f"{n}: {r}" for n, r in results.items() if isinstance(r, CheckFailed))
        with self._lock:
            changed, self._last_failures = failures != self._last_failures, failures
        if changed and failures:
            log.warning("not ready: %s", "; ".join(failures))
        elif changed:
            log.info("ready again")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    stat = Path(f"/proc/{pid}/stat")
    try:
        # "pid (comm) state ...": the state follows the last parenthesis.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): signal 0 is all there is


def readiness_of(request: Request) -> Readiness:
    """The app's readiness checks, made on first use."""
    state = request.app.state
    readiness: Readiness | None = getattr(state, "readiness", None)
    if readiness is None:
        readiness = state.readiness = Readiness.for_app(state.settings, state.engine)
    return readiness


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive and serving: no I/O."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready for traffic: 200 naming each check's state, else 503 naming what failed."""
    results = await readiness_of(request).run()
    failed = {n: r for n, r in results.items() if isinstance(r, CheckFailed)}
    if failed:
        issues = [Issue("transient", f"{name}: {reason}") for name, reason in failed.items()]
        return outcome_response(503, issues, {"Cache-Control": "no-store"})
    body = {"status": "ready", "checks": {n: str(r) for n, r in results.items()}}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
