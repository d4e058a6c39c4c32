"""Many rows in one INSERT whose text does not grow with the rows (PostgreSQL: ``unnest``).

SQLAlchemy's multi-row INSERT renders one placeholder per value, so a batch of 500 reports is a
statement of tens of thousands of placeholders that psycopg parses anew in Python every time
(its query cache takes only short statements): that parse was most of a batch's CPU. On
PostgreSQL the rows go instead as one array per column, ``INSERT ... SELECT * FROM
unnest(%(a)b::type[], ...)``: one short text per table and column set, which psycopg caches
and the server prepares, however many rows; the arrays go in binary, so nothing is escaped
(text arrays escaped in Python were the next cost). Other databases (SQLite) take
SQLAlchemy's INSERT.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Row, Table, TypeDecorator, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

_PG: Dialect = postgresql.dialect()  # type: ignore[no-untyped-call]


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    returning: Sequence[str] = (),
    skip_conflicts_on: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert ``rows`` (dicts with the same keys) in one statement; the ``returning`` columns.

    With ``skip_conflicts_on`` (the columns of a unique index) a row whose key is taken is not
    inserted (``ON CONFLICT DO NOTHING``), and returns nothing. Rows come back in no set order.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    if session.get_bind().dialect.name != "postgresql":
        statement: Any = insert(table)
        if skip_conflicts_on:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(table).on_conflict_do_nothing(
                index_elements=list(skip_conflicts_on)
            )
        if returning:
            statement = statement.returning(*(table.c[n] for n in returning))
            return list(session.execute(statement, list(rows)).all())
        session.execute(statement, list(rows))
        return []
    dialect = session.get_bind().dialect
    sql = _unnest_insert(table, names, tuple(returning), tuple(skip_conflicts_on))
    params = {n: _column_values(table.c[n], [row[n] for row in rows], dialect) for n in names}
    result = session.connection().exec_driver_sql(sql, params)
    return list(result.all()) if returning else []


def _column_values(column: Column[Any], values: list[Any], dialect: Dialect) -> list[Any]:
    process = column.type.bind_processor(dialect)  # e.g. UTCDateTime's check and conversion
    return [process(v) for v in values] if process is not None else values


@lru_cache(maxsize=256)
def _unnest_insert(
    table: Table, names: tuple[str, ...], returning: tuple[str, ...], conflict: tuple[str, ...]
) -> str:
    def array_of(name: str) -> str:
        kind = table.c[name].type
        base = kind.impl_instance if isinstance(kind, TypeDecorator) else kind
        return f"%({name})b::{base.compile(dialect=_PG)}[]"  # b: binary, nothing to escape

    def quoted(names: tuple[str, ...]) -> str:
        return ", ".join(f'"{n}"' for n in names)

    sql = (
        f'INSERT INTO "{table.name}" ({quoted(names)}) '
        f"SELECT * FROM unnest({', '.join(array_of(n) for n in names)})"
    )
    if conflict:
        sql += f" ON CONFLICT ({quoted(conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {quoted(returning)}"
    return sql
