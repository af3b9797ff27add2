"""Ingest writes its rows by hand for speed: they must be exactly what SQLAlchemy would bind.

``_ledger_rows`` builds the ``ledger_events`` rows column by column in C, in an order of
its own, with faster SQLite datetime texts and amount conversions than SQLAlchemy's
processors. Here it is held, on many generated events and on both databases' dialects,
to the general form: one list per column, each value put through the column type's own
bind processor.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Date, DateTime, Dialect
from sqlalchemy.dialects import postgresql, sqlite

from central_api.models import ledger_events
from central_api.services import ingest
from jxc import uuid7
from jxc.contract import INBOUND_KINDS, OUTBOUND_KINDS, EventKind, LedgerEvent

DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.pysqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
}

moments = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
    ),
)
amounts = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("999999999"), places=6, allow_nan=False
)
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@st.composite
def ledger_events_(draw: st.DrawFn) -> list[LedgerEvent]:
    count = draw(st.integers(min_value=1, max_value=8))
    first_seq = draw(st.integers(min_value=1, max_value=2**40))
    events = []
    for seq in range(first_seq, first_seq + count):
        kind = draw(st.sampled_from(list(EventKind)))
        magnitude = draw(amounts)
        negative = kind in OUTBOUND_KINDS or (kind not in INBOUND_KINDS and draw(st.booleans()))
        events.append(
            LedgerEvent(
                event_id=uuid7(),
                site_id="S01",
                seq=seq,
                occurred_at=draw(moments),
                kind=kind,
                item=draw(texts),
                lot=draw(st.none() | texts),
                expiry=draw(st.none() | st.dates(min_value=date(1, 1, 1))),
                location=draw(texts),
                qty=-magnitude if negative else magnitude,
                uom=draw(st.sampled_from(["pcs", "kg", "箱"])),
                unit_cost=draw(st.none() | amounts),
                ref=draw(st.none() | texts),
                device_id=draw(st.none() | texts),
                actor=draw(st.none() | texts),
            )
        )
    return events


def rows_the_general_way(
    dialect: Dialect, events: list[LedgerEvent], received_at: datetime
) -> list[tuple[Any, ...]]:
    """Column by column through SQLAlchemy's own bind processors: the definition."""
    columns: dict[str, Any] = {
        name: [getattr(event, name) for event in events] for name in LedgerEvent.model_fields
    }
    columns["event_id"] = [str(event.event_id) for event in events]
    columns["kind"] = [event.kind.value for event in events]
    columns["site_id"] = ingest._Same("S01")
    columns["received_at"] = ingest._Same(received_at)
    in_table_order = ingest._as_rows(ingest._driver_columns(dialect, ledger_events, columns))
    positions = [ledger_events.c.keys().index(name) for name in ingest._LEDGER_COLUMNS]
    return [tuple(row[position] for position in positions) for row in in_table_order]


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@given(events=ledger_events_(), received_at=moments)
def test_ledger_rows_are_what_sqlalchemy_would_bind(
    dialect_name: str, events: list[LedgerEvent], received_at: datetime
) -> None:
    dialect = DIALECTS[dialect_name]
    fast = ingest._ledger_rows(
        dialect,
        site_id="S01",
        events=events,
        event_ids=[str(event.event_id) for event in events],
        received_at=received_at,
    )
    general = rows_the_general_way(dialect, events, received_at)
    assert fast == general
    for fast_row, general_row in zip(fast, general, strict=True):
        # Equal is not enough: 5 == 5.0, and an aware and a naive time never compare.
        assert [type(value) for value in fast_row] == [type(value) for value in general_row]


@given(ids=st.lists(st.uuids(), max_size=20))
def test_id_texts_are_str_of_the_uuid(ids: list[uuid.UUID]) -> None:
    assert ingest._id_texts(ids) == [str(event_id) for event_id in ids]


@given(values=st.lists(moments | st.datetimes(), max_size=20))
def test_sqlite_datetime_texts_are_sqlalchemys(values: list[datetime]) -> None:
    dialect = DIALECTS["sqlite"]
    processor = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    assert ingest._sqlite_datetime_texts(values) == [processor(value) for value in values]


@given(day=st.dates())
def test_sqlite_date_text_is_sqlalchemys(day: date) -> None:
    dialect = DIALECTS["sqlite"]
    processor = Date().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    assert day.isoformat() == processor(day)


def test_the_fast_texts_are_the_ones_sqlite_uses() -> None:
    """If SQLAlchemy ever spells them differently, the check at first use falls back."""
    binds = ingest._ledger_binds(DIALECTS["sqlite"])
    assert binds.times is ingest._sqlite_datetime_texts
    assert binds.day == date.isoformat
    postgres = ingest._ledger_binds(DIALECTS["postgresql"])
    assert postgres.times is ingest._unchanged
    assert postgres.day is ingest._unchanged
