"""The push's statements at the driver (``central_api/core/driver.py``) store and read
exactly what SQLAlchemy's ``execute`` does, raise the same errors, and keep the
transaction; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import BigInteger, Connection, Engine, String, bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError

from central_api.core import driver
from central_api.models.audit import audit_log
from central_api.models.ledger import site_sync_state
from central_api.models.valuation import valuation_state
from central_api.services import audit, auth, ingest, periods, valuation

AT = datetime(2026, 12, 5, 9, 30, 1, 120_000, tzinfo=UTC)


def _raw(connection: Connection, table: str) -> list[tuple[Any, ...]]:
    """The table's rows as the driver gives them, no type processing."""
    return [tuple(row) for row in connection.exec_driver_sql(f"SELECT * FROM {table}")]


def _audit_values(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": AT.astimezone(timezone(timedelta(hours=8))),
        "actor_kind": "site",
        "actor_id": "S01",
        "site_id": "S01",
        "action": "sync.push",
        "resource": "sync_batch",
        "resource_id": "S01:1-1",
        "before": None,
        "after": '{"events":1}',
        "request_id": "r-1",
        "source": "127.0.0.1",
        "prev_hash": "0" * 64,
        "hash": "f" * 64,
    }


def _state_values() -> dict[str, Any]:
    return {
        "site_id": "S01",
        "item": "A-1",
        "method": "moving_average",
        "qty": 12_000_000,
        "value": 34_500_000,
        "last_cost": 2_875_000,
        "last_at": AT,
        "last_event_id": "0193a9e4-0000-7000-8000-000000000001",
        "updated_at": AT + timedelta(seconds=1),
    }


WRITES = [
    pytest.param("audit_log", audit._INSERT_ENTRY, _audit_values(1), id="audit entry"),
    pytest.param("valuation_state", valuation._INSERT_STATE, _state_values(), id="state"),
    pytest.param(
        "site_sync_state",
        insert(site_sync_state).values(
            site_id=bindparam("the_site"), acked_through_seq=7, updated_at=bindparam("now")
        ),
        {"the_site": "S01", "now": AT},
        id="site row",
    ),
]


@pytest.mark.parametrize(("table", "statement", "values"), WRITES)
def test_a_row_written_at_the_driver_is_the_row_execute_writes(
    engine: Engine, table: str, statement: Any, values: dict[str, Any]
) -> None:
    """Same stored values, byte for byte (SQLite's datetime text, an aware time in another
    zone, micro-unit integers), and read back the same through the result processors."""
    with engine.connect() as connection:
        with connection.begin() as transaction:
            connection.execute(statement, values)
            by_execute = _raw(connection, table)
            read_by_execute = [tuple(row) for row in connection.execute(select(*_table(table).c))]
            transaction.rollback()
        with connection.begin() as transaction:
            prepared = driver.prepare(statement, connection.dialect)
            assert driver.run(connection, prepared, values) == 1
            assert _raw(connection, table) == by_execute
            read = driver.prepare(select(*_table(table).c), connection.dialect)
            assert driver.rows(connection, read, {}) == read_by_execute
            transaction.rollback()


def _table(name: str) -> Any:
    return {"audit_log": audit_log, "valuation_state": valuation_state}.get(name, site_sync_state)


def test_the_push_reads_run_at_the_driver_as_through_execute(engine: Engine) -> None:
    """The statements a push reads with, prepared as the services prepare them, give
    the rows ``execute`` gives (by position, processed the same)."""
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(valuation._INSERT_STATE, _state_values())
        connection.execute(audit._INSERT_ENTRY, _audit_values(1))
        dialect = connection.dialect
        states = driver.rows(
            connection,
            valuation._states_of_site(connection),
            {"b_site": "S01", "b_items": ingest._list_param(connection, ["A-1", "B-2"])},
        )
        expected = connection.execute(select(*valuation._STATE_COLUMNS)).all()
        assert states == [tuple(row) for row in expected]
        assert isinstance(states[0][valuation._STATE_LAST_AT], datetime)
        assert driver.rows(
            connection, driver.prepared(audit._LOCK_HEAD, dialect), {"head_id": audit.AUDIT_HEAD_ID}
        ) == [tuple(connection.execute(audit._LOCK_HEAD, {"head_id": audit.AUDIT_HEAD_ID}).one())]
        assert (
            driver.rows(
                connection, driver.prepared(auth._CURRENT_GENERATION, dialect), {"site_id": "none"}
            )
            == []
        )
        assert periods.last_closed(connection) is None
        transaction.rollback()


def test_constants_are_written_into_the_sql_and_per_push_lists_refused() -> None:
    """A constant ``IN`` list and a literal go into the SQL (SQLite prepares a statement
    again on each execution when a bound value could change its plan); a parameter the
    caller gives stays a parameter; an expanding one given per execution is refused."""
    from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

    statement = select(site_sync_state.c.site_id).where(
        site_sync_state.c.site_id.in_(("S01", "S02")),
        site_sync_state.c.acked_through_seq > bindparam("watermark"),
    )
    for dialect in (sqlite.pysqlite.dialect(), postgresql.psycopg.dialect()):  # type: ignore[no-untyped-call]
        prepared = driver.prepare(statement, dialect)
        assert "'S01', 'S02'" in prepared.sql
        assert prepared.names == ("watermark",)
        assert prepared.parameters({"watermark": 3}) in ((3,), {"watermark": 3})
        with pytest.raises(TypeError, match="expands per execution"):
            driver.prepare(
                select(site_sync_state.c.site_id).where(
                    site_sync_state.c.site_id.in_(bindparam("sites", expanding=True))
                ),
                dialect,
            )


def test_an_error_at_the_driver_is_sqlalchemys_and_the_transaction_rolls_back(
    engine: Engine,
) -> None:
    """The common push falls back to the careful path on ``IntegrityError``: the driver's
    error must arrive as SQLAlchemy's, and the connection must go on after the rollback."""
    statement = driver.prepare(audit._INSERT_ENTRY, engine.dialect)
    with engine.connect() as connection:
        with connection.begin():
            driver.run(connection, statement, _audit_values(1))
            with pytest.raises(IntegrityError):
                driver.run(connection, statement, _audit_values(1))  # the same seq again
            connection.rollback()
        assert not connection.in_transaction()
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0
        connection.rollback()
        with connection.begin():
            assert driver.run(connection, statement, _audit_values(1)) == 1
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 1


def test_a_statement_outside_a_transaction_begins_one(engine: Engine) -> None:
    """As ``execute``'s autobegin: the write is undone by the connection's rollback."""
    statement = driver.prepare(audit._INSERT_ENTRY, engine.dialect)
    with engine.connect() as connection:
        assert not connection.in_transaction()
        driver.run(connection, statement, _audit_values(1))
        assert connection.in_transaction()
        connection.rollback()
        assert connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 0


def test_a_one_row_executemany_runs_once_with_the_same_count_and_errors(engine: Engine) -> None:
    """One row given to ``run_many`` goes as one ``execute`` (no pipeline on psycopg):
    the same row stored, the same count, a duplicate the same ``IntegrityError``."""
    statement = driver.prepare(audit._INSERT_ENTRY, engine.dialect)
    with engine.connect() as connection:
        with connection.begin():
            assert driver.run_many(connection, statement, [_audit_values(1)]) == 1
            assert driver.run_many(connection, statement, [_audit_values(2), _audit_values(3)])
            with pytest.raises(IntegrityError):
                driver.run_many(connection, statement, [_audit_values(2)])
            connection.rollback()
        with connection.begin():
            assert driver.run_many(connection, statement, [_audit_values(1)]) == 1
        stored = connection.execute(select(audit_log.c.seq, audit_log.c.hash)).all()
    assert [tuple(row) for row in stored] == [(1, "f" * 64)]


def test_a_write_along_with_its_audit_entry_is_one_statement_on_postgresql(
    engine: Engine,
) -> None:
    """The push's watermark move rides in its entry's statement on PostgreSQL (one round
    trip fewer); the entry is chained as any other. SQLite refuses the combination."""
    along = audit.appending_after(
        "UPDATE site_sync_state SET acked_through_seq = :watermark WHERE site_id = :the_site",
        bindparam("watermark", type_=BigInteger),
        bindparam("the_site", type_=String),
    )
    with engine.connect() as connection:
        with connection.begin():
            connection.execute(
                insert(site_sync_state).values(site_id="S01", acked_through_seq=0, updated_at=AT)
            )
        context = audit.system_context("test")
        with connection.begin():
            if engine.dialect.name != "postgresql":
                with pytest.raises(ValueError, match="PostgreSQL only"):
                    audit.record(
                        connection,
                        context,
                        action="sync.push",
                        resource="sync_batch",
                        along=(along, {"watermark": 7, "the_site": "S01"}),
                    )
                return
            seqs = [
                audit.record(connection, context, action="x.one", resource="x"),
                audit.record(
                    connection,
                    context,
                    action="sync.push",
                    resource="sync_batch",
                    along=(along, {"watermark": 7, "the_site": "S01"}),
                ),
            ]
        assert seqs == [1, 2]
        assert connection.execute(select(site_sync_state.c.acked_through_seq)).scalar_one() == 7
        assert audit.verify_chain(connection).intact
        connection.rollback()
