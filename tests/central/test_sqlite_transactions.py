"""SQLite settings that make a single-file central safe: WAL, FULL sync, BEGIN IMMEDIATE."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from central_api.core.db import create_db_engine, upgrade_database, write_transaction
from central_api.models import site_sync_state


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    upgrade_database(url)
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def test_connections_use_wal_full_sync_busy_timeout_and_foreign_keys(
    sqlite_engine: Engine,
) -> None:
    with sqlite_engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }


def test_write_transaction_takes_the_write_lock_at_begin(sqlite_engine: Engine) -> None:
    """The second writer is turned away at BEGIN, before it read anything it could act on."""

    @event.listens_for(sqlite_engine, "connect")
    def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    with sqlite_engine.connect() as first, sqlite_engine.connect() as second:
        with (
            write_transaction(first),
            pytest.raises(OperationalError, match="database is locked"),
            write_transaction(second),
        ):
            pytest.fail("a second write transaction began while the first held the lock")
        with write_transaction(second):
            pass  # and once the first has committed, the second gets its turn


def test_readers_are_not_blocked_by_a_writer(sqlite_engine: Engine) -> None:
    with sqlite_engine.connect() as writer, sqlite_engine.connect() as reader:
        with write_transaction(writer):
            writer.execute(
                insert(site_sync_state).values(
                    site_id="S01", acked_through_seq=0, updated_at=datetime.now(UTC)
                )
            )
            assert reader.execute(select(site_sync_state)).all() == []
            reader.rollback()
        assert len(reader.execute(select(site_sync_state)).all()) == 1
        reader.rollback()


def test_foreign_keys_are_enforced(sqlite_engine: Engine) -> None:
    with (
        sqlite_engine.connect() as connection,
        pytest.raises(IntegrityError),
        write_transaction(connection),
    ):
        connection.exec_driver_sql(
            "INSERT INTO stock_balances (site_id, location, item, lot, uom, qty, updated_at) "
            "VALUES ('NOSUCH', 'A', 'I', '', 'pcs', 1, '2026-01-01')"
        )


def test_parent_directory_of_the_database_is_created(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'central.db'}")
    with engine.connect():
        pass
    engine.dispose()
    assert (tmp_path / "deep" / "er" / "central.db").exists()


def test_bare_postgresql_url_uses_psycopg_3() -> None:
    engine = create_db_engine("postgresql://someone@127.0.0.1/somewhere")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_other_databases_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        create_db_engine("mysql://someone@127.0.0.1/somewhere")
