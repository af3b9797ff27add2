"""A pooled PostgreSQL connection is pinged on checkout when in doubt, not every time
(``central_api/core/db.py``, ``_install_postgresql_ping``): one the server has ended is
still replaced before use, so a restarted server costs a reconnect, not a failed request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from central_api.core import db
from central_api.core.db import create_db_engine

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_engine(postgres_session: tuple[str, psycopg.Connection[Any]]) -> Iterator[Engine]:
    url, _cleaner = postgres_session
    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pings sent on checkout."""
    sent: list[int] = []
    dialect = pg_engine.dialect
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        sent.append(1)
        return ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return sent


def _backend(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_just_given_back_is_used_without_a_ping(
    pg_engine: Engine, pings: list[int]
) -> None:
    first = _backend(pg_engine)
    assert [_backend(pg_engine) for _ in range(3)] == [first] * 3, "the one pooled connection"
    assert pings == [], "back in the pool a moment ago, nothing to read: no round trip"


def test_a_connection_the_server_ended_is_replaced_before_use(
    pg_engine: Engine, pings: list[int], postgres_session: tuple[str, psycopg.Connection[Any]]
) -> None:
    ended = _backend(pg_engine)
    _url, admin = postgres_session
    # Waits (up to 5 s) until the backend has exited, as a server's shutdown ends them.
    admin.execute("SELECT pg_terminate_backend(%s, 5000)", (ended,))

    replacement = _backend(pg_engine)  # at once: well within PING_AFTER_IDLE_S

    assert replacement != ended
    assert pings == [1], "its socket had the server's goodbye to read: pinged, found dead"


def test_a_connection_idle_for_long_is_pinged(
    pg_engine: Engine, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend(pg_engine)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", -1.0)  # every connection idle "too long"

    assert _backend(pg_engine) == first
    assert pings == [1]
