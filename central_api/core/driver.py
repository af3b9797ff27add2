"""A push's hot statements straight to the driver's cursor, compiled once per database.

A one-event push runs about fifteen small statements. Through ``Connection.execute``
each one pays SQLAlchemy's per-statement work (the compiled cache's lookup, an execution
context, parameter processing, the connection events, a result object) of 13-17 us on
SQLite, where the driver itself takes 1-2 us; a statement with an expanding ``IN`` also
renders its SQL again on every execution, and SQLite compiles a statement again on every
execution when a bound value is compared with a partial index's condition. At the driver a
one-event push's merge took 0.47 ms of CPU instead of 1.2-1.3 ms (``docs/performance.md``,
"A push's statements at the driver").

:func:`prepare` compiles a SQLAlchemy statement once for a dialect into the driver's own
SQL text (constant ``IN`` lists expanded into it), the order its parameters go in, and
the bind and result conversions SQLAlchemy would apply; :func:`rows` and :func:`run`
execute it on the connection's own DBAPI connection, inside the connection's
transaction. What stays as it was:

* **errors**: a driver error goes through the connection's own handling
  (``Connection._handle_dbapi_exception``), so callers see the very exception
  ``execute`` raises (``IntegrityError``, ``OperationalError``, ...), a lost connection
  is invalidated as before, and ``handle_error`` listeners run;
* **values**: every bind parameter goes through its type's bind processor and every
  result column through its result processor, as SQLAlchemy's own execution does; a
  statement that needs more than that (an expanding parameter given per execution,
  a type whose result depends on the driver's column description) is refused when it is
  prepared, not run differently;
* **the transaction**: a connection outside one begins it first (SQLAlchemy's autobegin,
  so SQLite's ``BEGIN`` hook still runs).

What is given up: ``before_cursor_execute`` and ``after_cursor_execute`` listeners do not
see these statements (the app registers none; ``bench/profile_requests.py`` counts them by
wrapping this module's ``_execute``), and SQLAlchemy's SQL echo does not show them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import BindParameter

_REQUIRED = object()
"""A parameter the caller must give on every execution."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement as one database's driver takes it; see :func:`prepare`."""

    sql: str
    positional: bool
    names: tuple[str, ...]
    """Every parameter the driver takes, in order (positional) or by name."""
    defaults: tuple[Any, ...]
    """Per name: its constant value (already converted), or ``_REQUIRED``."""
    binds: tuple[Callable[[Any], Any] | None, ...]
    """Per name: the type's bind processor, for a value given at execution."""
    results: tuple[Callable[[Any], Any] | None, ...] | None
    """Per result column: its result processor; None when no column has one."""

    def parameters(self, given: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for ``given`` (by name), constants filled in."""
        values = []
        for name, default, bind in zip(self.names, self.defaults, self.binds, strict=True):
            if default is _REQUIRED:
                value = given[name]
                values.append(value if bind is None else bind(value))
            else:
                values.append(default)
        if self.positional:
            return tuple(values)
        return dict(zip(self.names, values, strict=True))


def prepare(statement: ClauseElement, dialect: Dialect) -> Prepared:
    """Compile ``statement`` once for ``dialect`` into the driver's SQL and parameters.

    Parameters without a value (``bindparam("name")``) are given at execution; those with
    one (the lists of ``in_((...))`` over constants, literals) are written into the SQL. Raises
    :class:`TypeError` for what :func:`rows` could not run as ``execute`` would.
    """
    # Constants are written into the SQL, not bound: SQLite prepares a statement again on
    # every execution when a bound value could change its plan (a partial index's
    # condition: the alerts read took 64 us for 8 with its constants inline), and
    # PostgreSQL's generic plan can use such an index only for a constant.
    inlined: ClauseElement = visitors.replacement_traverse(
        cast(Any, statement), {}, _inline_constant
    )
    compiled = inlined.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"{type(statement).__name__} does not compile to SQL")
    required = {name for name, bind in compiled.binds.items() if bind.required}
    for name in required:
        if compiled.binds[name].expanding:
            raise TypeError(f"parameter {name!r} expands per execution: not preparable")
    expanded = compiled.construct_expanded_state(dict.fromkeys(required))
    # The bind processors execute applies (the compiled statement's own), and those of
    # the expanded constants.
    processors: dict[str, Any] = {**compiled._bind_processors, **expanded.processors}
    if expanded.positiontup is not None:
        names, positional = tuple(expanded.positiontup), True
    else:
        names, positional = tuple(expanded.parameters), False
    defaults: list[Any] = []
    binds: list[Callable[[Any], Any] | None] = []
    for name in names:
        processor = processors.get(name)
        if name not in required:  # a constant, or an expanded constant's own (kind_1_2)
            value = expanded.parameters[name]
            defaults.append(value if processor is None else processor(value))
            binds.append(None)
        else:
            defaults.append(_REQUIRED)
            binds.append(processor)
    results: tuple[Callable[[Any], Any] | None, ...] | None = None
    selected = getattr(statement, "selected_columns", None)
    if selected is None and isinstance(statement, UpdateBase):
        selected = statement.exported_columns  # an INSERT's (UPDATE's) RETURNING columns
    if selected is not None:
        found = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in selected
        )
        if any(found):
            results = found
    return Prepared(
        sql=expanded.statement,
        positional=positional,
        names=names,
        defaults=tuple(defaults),
        binds=tuple(binds),
        results=results,
    )


def _inline_constant(element: Any, **_kw: Any) -> Any:
    if isinstance(element, BindParameter) and not element.required:
        return element.render_literal_execute()
    return None


_PREPARED: dict[tuple[int, str], Prepared] = {}


def prepared(statement: ClauseElement, dialect: Dialect) -> Prepared:
    """:func:`prepare`'s answer for ``statement`` on ``dialect``, made once and kept
    (the statement must be a module-level constant: kept by its identity)."""
    key = (id(statement), dialect.name)
    found = _PREPARED.get(key)
    if found is None:
        found = _PREPARED[key] = prepare(statement, dialect)
        _KEEP_ALIVE.append(statement)  # its id must never be reused by another
    return found


_KEEP_ALIVE: list[ClauseElement] = []


def rows(
    connection: Connection, statement: Prepared, given: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run ``statement`` with ``given`` and return all its rows, as tuples read by position."""
    cursor = _execute(connection, statement.sql, statement.parameters(given))
    try:
        fetched: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    results = statement.results
    if results is None:
        return fetched
    return [
        tuple(
            value if process is None else process(value)
            for value, process in zip(row, results, strict=True)
        )
        for row in fetched
    ]


def run(connection: Connection, statement: Prepared, given: Mapping[str, Any]) -> int:
    """Run ``statement`` (a write) with ``given``; the driver's row count."""
    cursor = _execute(connection, statement.sql, statement.parameters(given))
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def run_many(
    connection: Connection, statement: Prepared, given: Sequence[Mapping[str, Any]]
) -> int:
    """Run ``statement`` (a write) once per mapping of ``given`` (``executemany``)."""
    parameters = [statement.parameters(each) for each in given]
    cursor = _execute(connection, statement.sql, parameters, many=True)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def run_sql(
    connection: Connection,
    sql: str,
    parameters: Sequence[Any] | Mapping[str, Any] | Sequence[Sequence[Any]] = (),
    *,
    many: bool = False,
) -> int:
    """Run SQL written in the driver's own style (as ``exec_driver_sql`` takes it), once
    or, with ``many``, once per row of ``parameters``; the driver's row count."""
    cursor = _execute(connection, sql, parameters, many=many)
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


def rows_sql(
    connection: Connection, sql: str, parameters: Sequence[Any] | Mapping[str, Any] = ()
) -> list[tuple[Any, ...]]:
    """Run SQL written in the driver's own style and return all its rows as the driver
    gives them (no result processors: for columns that need none)."""
    cursor = _execute(connection, sql, parameters)
    try:
        fetched: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    return fetched


def _execute(connection: Connection, sql: str, parameters: Any, *, many: bool = False) -> Any:
    if not connection.in_transaction():
        connection.begin()  # as execute's autobegin: SQLite's BEGIN hook runs
    if many and len(parameters) == 1:
        # One row: the same statement, once. psycopg runs ``executemany`` in pipeline
        # mode, whose entry, sync and exit cost a one-row write 30 us more than
        # ``execute`` (three such writes in a one-event push); the row count is the same.
        many, parameters = False, parameters[0]
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except BaseException as error:
        try:
            # SQLAlchemy's own handling: the same exception classes as execute, a lost
            # connection invalidated, handle_error listeners run.
            connection._handle_dbapi_exception(error, sql, parameters, cursor, None)
        finally:
            cursor.close()
    return cursor
