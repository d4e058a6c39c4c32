"""Applying the Alembic migrations from code (``careloop migrate``, ``careloop serve``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """What autogenerate compares: everything but careloop's migration lock table."""
    return not (type_ == "table" and name == "careloop_migration_lock")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at careloop's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema.

    Processes starting together (``serve`` and a CLI command, several API processes) take a lock
    first, so one migrates and the others then find the schema current.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(8675309)"))
        elif connection.dialect.name == "sqlite":
            # A write takes SQLite's database lock for the rest of this transaction.
            connection.execute(text("CREATE TABLE IF NOT EXISTS careloop_migration_lock (n INT)"))
            connection.execute(text("DELETE FROM careloop_migration_lock"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
