"""Small pieces of SQL that several services build their hot statements from.

They began inside ``services/ingest.py``, where a push's lookups and inserts had to be
cheap for 5,000 events; the projections that run inside the same push (alerts, document
progress) then wanted the same tricks and imported ingest's private names. Here they are
public and owned by no one service, so a change to ingest's internals cannot break a
projection, and a projection does not reach into ingest.

Each piece renders the same thing on SQLite and PostgreSQL (the project's two databases);
none knows any table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Dialect,
    String,
    any_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql


def one_of(connection: Connection, column: Column[str], name: str) -> ColumnElement[bool]:
    """``column IN (:name)`` with the list as one parameter (see :func:`list_param`).

    A batch looks up to 5000 ids at once. As a single parameter the statement is the same
    on every push, so its compiled form is cached, and the server parses one value, not
    5000 placeholders: ``= ANY(:array)`` on PostgreSQL, ``IN (SELECT value FROM
    json_each(:json))`` on SQLite (SQLAlchemy's expanding IN spent more time rendering
    the 5000 placeholders than SQLite spent on the lookup).
    """
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(String)))
    values = func.json_each(bindparam(name, type_=String)).table_valued("value")
    return column.in_(select(values.c.value))


def list_param(connection: Connection, values: Sequence[str]) -> list[str] | str:
    """The parameter :func:`one_of` expects: the list itself, or its JSON on SQLite."""
    if connection.dialect.name == "postgresql":
        return list(values)
    return json.dumps(values, ensure_ascii=False)


def placeholder(dialect: Dialect) -> str:
    """The driver's own parameter mark, for SQL written as text and run with
    ``exec_driver_sql``: statements run once per row of a large batch skip SQLAlchemy's
    compiling and parameter handling that way, and must then speak the driver's style
    (``?`` for sqlite3, ``%s`` for psycopg)."""
    if dialect.paramstyle == "qmark":
        return "?"
    if dialect.paramstyle in ("format", "pyformat"):
        return "%s"
    raise NotImplementedError(f"driver paramstyle {dialect.paramstyle!r}")
