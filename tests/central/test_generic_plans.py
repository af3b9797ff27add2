"""A (site, item)'s newest valuation entry at a moment is found in a few index entries,
whatever plan PostgreSQL uses (issue 17).

psycopg prepares a statement after five executions, and PostgreSQL may then plan it once
for any parameters (a generic plan), estimating a key's rows as an average key's. Asked
``ORDER BY occurred_at DESC, event_id DESC LIMIT 1`` over an index without ``event_id``,
that plan sorted every entry of the key before the moment: on the 5,000,000-row bench an
as-of read of the busy item took 266 ms instead of 2 (docs/performance.md, "Generic
plans"). The reads now find the moment by ``max`` and then the entry. Shown here on both
databases: the same entries as worked out from all of them; on PostgreSQL, under
``plan_cache_mode = force_generic_plan`` and past psycopg's prepare threshold, the index
entries read per call (``pg_stat_xact_user_indexes``) stay a handful for a history of
hundreds. The same for a page of one item's movement ledger from a moment or a cursor
on (``reports._page_through``: 520 ms under a generic plan for the busy item before).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, select, text

from central_api.models import valuation_entries
from central_api.services import reports, valuation
from tests.central.conftest import SiteLedger
from tests.central.test_valuation_late import MOVING_AVERAGE, T0, TAIL, _history, _items, _push_all

MICRO = 1_000_000
"""Micro-units in one: what ``State`` counts in."""

PREPARED_AFTER = 5
"""psycopg's default ``prepare_threshold``: executions before a statement is prepared."""


def _index_entries_read(connection: Connection) -> int:
    """Rows the current transaction has fetched from ``valuation_entries`` through an
    index (an index-only step, as ``max`` takes, fetches none or one)."""
    return int(
        connection.execute(
            text(
                "SELECT coalesce(sum(idx_tup_fetch), 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'valuation_entries'"
            )
        ).scalar_one()
    )


def _all_entries(connection: Connection, site_id: str, item: str) -> list[Any]:
    entries = valuation_entries.c
    return list(
        connection.execute(
            select(valuation_entries)
            .where(entries.site_id == site_id, entries.item == item)
            .order_by(entries.occurred_at, entries.event_id)
        )
    )


def _read_under_generic_plans(
    connection: Connection, read: Callable[[], Any], moments: int
) -> tuple[list[Any], list[int]]:
    """``read`` run ``moments`` times; on PostgreSQL with generic plans forced, and the
    index entries each call read once the statement is prepared."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    answers, read_counts = [], []
    for n in range(moments):
        before = _index_entries_read(connection) if postgres else 0
        answers.append(read())
        if postgres and n > PREPARED_AFTER:
            read_counts.append(_index_entries_read(connection) - before)
    return answers, read_counts


def test_the_newest_entry_at_a_moment_reads_a_few_index_entries(
    engine: Engine, site: SiteLedger
) -> None:
    _items(engine, TEA=MOVING_AVERAGE)
    _push_all(engine, site, _history(site, "TEA"))
    moments = [T0 + timedelta(minutes=3 + 5 * n) for n in range(12)]
    with engine.connect() as connection:
        stored = _all_entries(connection, site.site_id, "TEA")
        assert len(stored) == TAIL

        moment_of_row = [valuation.utc(row.occurred_at) for row in stored]

        def expected(moment: datetime) -> Any:
            earlier = [row for row, at in zip(stored, moment_of_row, strict=True) if at <= moment]
            return earlier[-1] if earlier else None

        # The value read of the as-of report (_worth_at_each).
        moment_of = iter(moments)
        worths, read_counts = _read_under_generic_plans(
            connection,
            lambda: (
                (m := next(moment_of)),
                reports._worth_at_each(connection, {(site.site_id, "TEA")}, m),
            ),
            len(moments),
        )
        for moment, found in worths:
            want = expected(moment)
            if want is None:
                assert found == {}
            else:
                worth = found[(site.site_id, "TEA")]
                assert (worth.qty, worth.value) == (want.qty_after, want.value_after)
        assert all(count <= 10 for count in read_counts), read_counts

        # The state before a late point (the late path's _state_before).
        points = [(moment_of_row[n], stored[n].event_id) for n in range(40, 52)]
        point_of = iter(points)
        states, read_counts = _read_under_generic_plans(
            connection,
            lambda: (
                (p := next(point_of)),
                valuation._state_before(connection, (site.site_id, "TEA"), MOVING_AVERAGE, p),
            ),
            len(points),
        )
        for (_at, event_id), state in states:
            position = next(n for n, row in enumerate(stored) if row.event_id == event_id)
            want = stored[position - 1]
            assert (state.qty, state.value) == (
                int(want.qty_after * MICRO),
                int(want.value_after * MICRO),
            )
        assert all(count <= 10 for count in read_counts), read_counts
        connection.rollback()


def test_the_latest_entries_of_a_key_are_read_from_the_index_backwards(
    engine: Engine, site: SiteLedger
) -> None:
    _items(engine, TEA=MOVING_AVERAGE)
    _push_all(engine, site, _history(site, "TEA"))
    with engine.connect() as connection:
        stored = _all_entries(connection, site.site_id, "TEA")
        for limit in (1, 7, 30, TAIL, TAIL + 5):
            listed = valuation.list_entries(
                connection, site_id=site.site_id, item="TEA", limit=limit
            )
            assert [entry["event_id"] for entry in listed] == [
                row.event_id for row in stored[-limit:]
            ]
        _answers, read_counts = _read_under_generic_plans(
            connection,
            lambda: valuation.list_entries(connection, site_id=site.site_id, item="TEA", limit=20),
            PREPARED_AFTER + 4,
        )
        # 20 entries and the few that share the oldest one's moment, read twice (its
        # moment, then the entries): not the whole history.
        assert all(count <= 60 for count in read_counts), read_counts
        connection.rollback()


def _rows_read(connection: Connection, tables: tuple[str, ...]) -> int:
    """Rows the current transaction has fetched from ``tables``, by index or by scan."""
    return int(
        connection.execute(
            text(
                "SELECT coalesce(sum(coalesce(idx_tup_fetch, 0) + seq_tup_read), 0) "
                "FROM pg_stat_xact_user_tables WHERE relname = ANY(:tables)"
            ),
            {"tables": list(tables)},
        ).scalar_one()
    )


TABLES = ("valuation_entries", "ledger_events")
"""What a page of one item's movements reads."""


def test_a_page_of_one_items_movements_reads_about_a_page(engine: Engine, site: SiteLedger) -> None:
    """The movement ledger of one (site, item), from a moment or a cursor on: every page
    as the ledger's own order gives it, and on PostgreSQL under a generic plan about a
    page of rows read, not every entry from the moment on (half a second for the busy
    item of the 5,000,000-row bench before ``reports._page_through``)."""
    _items(engine, TEA=MOVING_AVERAGE)
    _push_all(engine, site, _history(site, "TEA"))
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        stored = [
            (valuation.utc(row.occurred_at), row.event_id)
            for row in _all_entries(connection, site.site_id, "TEA")
        ]
        if postgres:
            connection.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        since = stored[40][0]
        for limit in (1, 7, 30):
            # Every page of the ledger from ``since`` on, each page a cursor's call.
            chosen = reports.MovementFilter(site_id=site.site_id, item="TEA", since=since)
            after: str | None = None
            listed, read_counts = [], []
            while True:
                before = _rows_read(connection, TABLES) if postgres else 0
                page = reports.movements(connection, chosen, after=after, limit=limit)
                if postgres:
                    read_counts.append(_rows_read(connection, TABLES) - before)
                assert len(page.rows) <= limit
                listed.extend((row["occurred_at"], row["event_id"]) for row in page.rows)
                if page.next_after is None:
                    break
                after = page.next_after
            assert listed == [entry for entry in stored if entry[0] >= since]
            if postgres:
                # The first calls plan afresh; from the sixth the statements are prepared.
                # A page of entries, read twice (its bound, then the page) with its ledger
                # rows, and the few sharing the bound's moment: not the whole history.
                prepared = read_counts[PREPARED_AFTER + 1 :]
                assert all(count <= 4 * limit + 12 for count in prepared), (limit, read_counts)
        connection.rollback()


def test_a_bound_too_early_falls_back_to_the_whole_page(
    engine: Engine, site: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were there valuation entries neither ledger's query shows, the bound would come
    before a page of movements; the page is then read again without it, so the pages
    are still every movement once, in order."""
    _items(engine, TEA=MOVING_AVERAGE)
    _push_all(engine, site, _history(site, "TEA"))
    real = reports._page_through

    def early(*args: Any) -> datetime | None:
        through = real(*args)
        return None if through is None else through - timedelta(minutes=7)

    monkeypatch.setattr(reports, "_page_through", early)
    with engine.connect() as connection:
        stored = [
            (valuation.utc(row.occurred_at), row.event_id)
            for row in _all_entries(connection, site.site_id, "TEA")
        ]
        chosen = reports.MovementFilter(site_id=site.site_id, item="TEA")
        after: str | None = None
        listed = []
        while True:
            page = reports.movements(connection, chosen, after=after, limit=9)
            assert len(page.rows) == 9 or page.next_after is None
            listed.extend((row["occurred_at"], row["event_id"]) for row in page.rows)
            if page.next_after is None:
                break
            after = page.next_after
        assert listed == stored
