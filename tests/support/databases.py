"""Scratch PostgreSQL databases of a test process's own, on the test server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

PG_ADMIN_URL = os.environ.get("CARELOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def create_pg_database(name: str) -> str:
    """(Re)create the empty database ``name``; its SQLAlchemy URL."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return (
        PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        + f"/{name}"
    )


def drop_pg_database(name: str) -> None:
    """Drop the database ``name``, closing its connections."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_pg_database(purpose: str) -> Iterator[str]:
    """An empty database named after ``purpose`` and this xdist worker; dropped on exit."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"careloop_{purpose}_{worker}_{secrets.token_hex(4)}"
    url = create_pg_database(name)
    try:
        yield url
    finally:
        drop_pg_database(name)
