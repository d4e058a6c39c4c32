"""What the tasks run against: settings and a database engine, set once per process."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from careloop.services.settings import Settings


@dataclass
class Runtime:
    """The settings and engine workflow code uses in this process."""

    settings: Settings
    engine: Engine


_runtime: Runtime | None = None


def configure(settings: Settings, engine: Engine) -> None:
    """Use ``settings`` and ``engine`` for every task run in this process."""
    global _runtime
    _runtime = Runtime(settings, engine)


def runtime() -> Runtime:
    """The runtime ``configure`` set for this process.

    There is no default from the environment: a worker process is configured by the command
    that starts it, and a task run anywhere else without one is a mistake worth an error.
    """
    if _runtime is None:
        raise RuntimeError(
            "the workflow runtime is not configured: call workflows.runtime.configure first"
        )
    return _runtime
