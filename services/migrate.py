"""Applying the Alembic migrations from code (``careloop migrate``, ``careloop serve``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger("careloop.migrate")

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


def known_revisions(config: Config | None = None) -> frozenset[str]:
    """Every revision careloop's migrations know."""
    script = ScriptDirectory.from_config(config or alembic_config())
    return frozenset(revision.revision for revision in script.walk_revisions())


def _newer_revisions(connection: Connection, config: Config) -> set[str]:
    """The database's revisions this code does not know: a newer release migrated it."""
    if not inspect(connection).has_table("alembic_version"):
        return set()
    current = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    return current - known_revisions(config)


def upgrade(engine: Engine) -> bool:
    """Bring the database behind ``engine`` to the newest schema; False if it is newer already.

    Processes starting together (``serve`` and a CLI command, several API processes) take a lock
    first, so one migrates and the others then find the schema current. A database a newer
    release migrated is left as it is: careloop's migrations keep the schema usable by the
    release before (expand, then contract a release later), so rolling back the code is safe.
    """
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(8675309)"))
        elif connection.dialect.name == "sqlite":
            # A write takes SQLite's database lock for the rest of this transaction.
            connection.execute(text("CREATE TABLE IF NOT EXISTS careloop_migration_lock (n INT)"))
            connection.execute(text("DELETE FROM careloop_migration_lock"))
        if _newer_revisions(connection, config):
            log.warning("the database's schema is newer than this release's; not migrating")
            return False
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return True
