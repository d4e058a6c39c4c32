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
    """The configured runtime, by default from the environment."""
    global _runtime
    if _runtime is None:
        from careloop.services.db import get_engine
        from careloop.services.settings import get_settings

        _runtime = Runtime(get_settings(), get_engine())
    return _runtime
