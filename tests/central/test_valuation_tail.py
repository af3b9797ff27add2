"""A late event with a long tail leaves its (site, item) lagging, settled right after the
push's commit, and no reader ever sees the stale values (issue 17).

Past ``valuation.LAG_AFTER`` later entries, a late event's push writes its own entries
only and records the (site, item) as lagging from the late point (``valuation_pending``,
link ``valuation_tail:<item>``, the boundary in ``since_at``/``since_event_id``): its
stored entries from the boundary on and its state row are stale until the tail is
settled, right after the commit, in transactions of at most ``SETTLE_CHUNK`` entries.
Every later movement of a lagging key extends the lag (from the earliest point); every
reader of values settles first (:func:`valuation.settle_for_reading`). Here both bounds
are 3, so every late event of a history of a few hundred movements lags: the settled
result equals a valuation from scratch, a crash before the settling is repaired by the
site's next push, by a reader, or by ``check --repair``, and the property tests of
``test_valuation_property`` hold with lagging keys all along.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, select, update

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.models import items, valuation_entries, valuation_pending, valuation_state
from central_api.models.base import from_micro_units
from central_api.services import monitoring, valuation
from central_api.services.reports import cents
from central_api.services.valuation import MOVING_AVERAGE
from jxc.contract import LedgerEvent
from jxc.paths import REPORTS, VALUATION
from tests.central import test_valuation_property as properties
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import master, ok
from tests.central.test_valuation_late import T0, TAIL, _at, _history, _items, _push_all
from tests.central.test_valuation_pending import _assert_equal_to_from_scratch, _push

__all__ = ["master"]  # the fixture, imported to be used here

BOUND = 3
_SETTLE_SITE = valuation.settle_site
"""The real one, before a fixture replaces it."""


@pytest.fixture
def tiny_bounds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Both bounds 3; the sizes of every rewrite of a moving-average (site, item)'s
    entries (FIFO's are written whole, as before), and a -1 for each boundary recorded."""
    monkeypatch.setattr(valuation, "LAG_AFTER", BOUND)
    monkeypatch.setattr(valuation, "SETTLE_CHUNK", BOUND)
    sizes: list[int] = []
    real = valuation._update_entries
    real_tails = valuation._write_tails

    def counted(connection: Any, key: Any, since: Any, rows: Any, until: Any = None) -> None:
        if key[1] != "BOLT":  # test_valuation_property's FIFO item
            sizes.append(len(rows))
        real(connection, key, since, rows, until)

    def recorded(connection: Any, changes: Any, tails: Any, *, at: Any) -> None:
        sizes.extend(-1 for point in changes.values() if point is not None)
        real_tails(connection, changes, tails, at=at)

    monkeypatch.setattr(valuation, "_update_entries", counted)
    monkeypatch.setattr(valuation, "_write_tails", recorded)
    return sizes


@pytest.fixture
def no_settling(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Settling after the commit skipped, as a crash right after it would."""
    skipped: list[str] = []
    monkeypatch.setattr(valuation, "settle_site", lambda _c, site_id: skipped.append(site_id))
    return skipped


def _tails(connection: Connection) -> dict[tuple[str, str], tuple[datetime, str]]:
    pending = valuation_pending.c
    return {
        (row.site_id, row.link.removeprefix("valuation_tail:")): (
            valuation.utc(row.since_at),
            row.since_event_id,
        )
        for row in connection.execute(
            select(pending.site_id, pending.link, pending.since_at, pending.since_event_id)
        )
        if row.link.startswith("valuation_tail:")
    }


def _assert_right_before_the_tails(connection: Connection) -> int:
    """Every state row of a key that does not lag, and every entry before its key's
    boundary, equals a valuation from scratch; the number of entries past a boundary
    (not compared: stale until settled)."""
    fresh = valuation.value_from_scratch(connection)
    tails = _tails(connection)
    states = {
        (row.site_id, row.item): (row.qty, row.value)
        for row in connection.execute(select(*valuation._STATE_COLUMNS))
        if (row.site_id, row.item) not in tails
    }
    assert states == {
        key: (state.qty, state.value) for key, state in fresh.states.items() if key not in tails
    }
    past = 0
    for row in connection.execute(select(*valuation._ENTRY_COLUMNS)):
        boundary = tails.get((row.site_id, row.item))
        if boundary is not None and (valuation.utc(row.occurred_at), row.event_id) >= boundary:
            past += 1
            continue
        assert valuation._result_of(row) == fresh.results[row.event_id], row.event_id
    return past


def _late_receipt(site: SiteLedger, minute: int, cost: str = "3.333") -> dict[str, Any]:
    return site.event("receipt", "9", item="PILL", unit_cost=cost, occurred_at=_at(minute))


def test_a_late_event_lags_and_is_settled_in_chunks(engine: Engine, tiny_bounds: list[int]) -> None:
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    tiny_bounds.clear()
    _push(engine, site, [_late_receipt(site, 41)])
    # The push rewrote nothing and recorded the boundary; each settling transaction
    # rewrote at most 3 entries (moving the boundary on), until none was left.
    assert tiny_bounds[0] == -1, tiny_bounds
    assert max(tiny_bounds) <= BOUND, tiny_bounds
    assert sum(size for size in tiny_bounds if size > 0) > 50 * BOUND, tiny_bounds
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)
        assert valuation.check(connection) == []


def test_a_short_tail_is_still_revalued_in_the_push(
    engine: Engine, tiny_bounds: list[int], no_settling: list[str]
) -> None:
    """Up to LAG_AFTER later entries, a late event is re-valued in its push, as before."""
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    tiny_bounds.clear()
    # Three minutes before the newest movement: one or two entries after it.
    late = site.event("receipt", "9", item="PILL", unit_cost="2", occurred_at=_at(7 + 2 * TAIL))
    _push(engine, site, [late])
    assert -1 not in tiny_bounds
    assert no_settling == []
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


@pytest.fixture
def crashed_lagging(engine: Engine, tiny_bounds: list[int], no_settling: list[str]) -> SiteLedger:
    """A long history of PILL at S01, then a late receipt whose push committed its entry
    and the boundary, and the process died before settling it."""
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    _push(engine, site, [_late_receipt(site, 41)])
    assert no_settling == ["S01"]
    with engine.connect() as connection:
        assert list(_tails(connection)) == [("S01", "PILL")]
        assert _assert_right_before_the_tails(connection) > 100
        found = {str(d) for d in valuation.check(connection) if d.what != "balance"}
    assert any(d.startswith("pending S01/valuation_tail:PILL: ") for d in found), found
    assert any(d.startswith("entry ") for d in found), found  # the stale ones, named too
    return site


def test_later_events_of_a_lagging_key_extend_the_lag(
    engine: Engine, crashed_lagging: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a key lags, a movement after its boundary leaves the boundary; one before it
    moves it back; one after every other is valued provisionally too (the state it would
    value on from is stale). Settled, all of it equals a valuation from scratch."""
    site = crashed_lagging
    with engine.connect() as connection:
        [before] = _tails(connection).values()
    _push(engine, site, [_late_receipt(site, 400, cost="7.01")])
    with engine.connect() as connection:
        assert list(_tails(connection).values()) == [before]
        _assert_right_before_the_tails(connection)
    _push(engine, site, [_late_receipt(site, 20, cost="0.5")])
    _push(engine, site, [site.event("sale", "-4", item="PILL", occurred_at=_at(99_999))])
    with engine.connect() as connection:
        [after] = _tails(connection).values()
        assert after < before
        _assert_right_before_the_tails(connection)
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    with engine.connect() as connection:
        valuation.settle_site(connection, "S01")
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


def test_the_next_push_of_the_site_settles_a_lag_a_crash_left(
    engine: Engine, crashed_lagging: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = crashed_lagging
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    _push(engine, site, [site.event("sale", "-1", item="PILL", occurred_at=_at(99_999))])
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


def test_a_reader_settles_first(
    engine: Engine, crashed_lagging: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """settle_for_reading on a connection with a read transaction open: it settles, and
    what the connection reads next is settled."""
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    with engine.connect() as connection:
        stale = connection.execute(select(valuation_state.c.value)).scalar_one()
        valuation.settle_for_reading(connection)
        fresh = valuation.value_from_scratch(connection)
        settled = connection.execute(select(valuation_state.c.value)).scalar_one()
        assert settled == from_micro_units(fresh.states[("S01", "PILL")].value)
        assert settled != stale
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)
        connection.rollback()


def test_settle_for_reading_refuses_a_write_transaction(engine: Engine) -> None:
    with (
        engine.connect() as connection,
        write_transaction(connection),
        pytest.raises(RuntimeError, match="write transaction"),
    ):
        valuation.settle_for_reading(connection)


def test_reports_and_the_valuation_api_never_show_a_lagging_value(
    client: TestClient,
    engine: Engine,
    tiny_bounds: list[int],
    no_settling: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lag a crash left, then the reads a manager makes: each answers the values a
    valuation from scratch gives, never the stale ones."""
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    with engine.connect() as connection:
        fresh_before = valuation.value_from_scratch(connection)
    _push(engine, site, [_late_receipt(site, 41)])
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    with engine.connect() as connection:
        assert list(_tails(connection)) == [("S01", "PILL")]
        stale = connection.execute(select(valuation_state.c.value)).scalar_one()
        fresh = valuation.value_from_scratch(connection)
    worth = from_micro_units(fresh.states[("S01", "PILL")].value)
    assert stale == from_micro_units(fresh_before.states[("S01", "PILL")].value) != worth
    [row] = ok(client.get(VALUATION, params={"site_id": "S01"}))
    assert Decimal(row["value"]) == worth
    with engine.connect() as connection:
        assert _tails(connection) == {}
    # Lagging again (a second late event, settling skipped), then the stock report.
    monkeypatch.setattr(valuation, "settle_site", lambda _c, _s: None)
    _push(engine, site, [_late_receipt(site, 30, cost="9")])
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    with engine.connect() as connection:
        assert list(_tails(connection)) == [("S01", "PILL")]
        fresh = valuation.value_from_scratch(connection)
    answer = ok(client.get(f"{REPORTS}/stock-on-hand", params={"site_id": "S01"}))
    [row] = answer["rows"]  # one location, no lot: the report's value is in cents
    assert Decimal(row["value"]) == cents(from_micro_units(fresh.states[("S01", "PILL")].value))
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


def test_check_repair_settles_a_lag_a_crash_left(
    engine: Engine, crashed_lagging: SiteLedger
) -> None:
    with engine.connect() as connection, write_transaction(connection):
        valuation.rebuild(connection, at=datetime.now(UTC))
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


def test_a_changed_method_drops_the_lag(engine: Engine, crashed_lagging: SiteLedger) -> None:
    """FIFO replays from the start and writes every entry: nothing left to settle."""
    site = crashed_lagging
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            update(items).where(items.c.item_code == "PILL").values(valuation="fifo")
        )
    _push(engine, site, [site.event("sale", "-1", item="PILL", occurred_at=_at(99_999))])
    with engine.connect() as connection:
        assert _tails(connection) == {}
        assert connection.execute(select(valuation_state.c.method)).scalar_one() == "fifo"
        _assert_equal_to_from_scratch(connection)


def test_entries_past_the_boundary_are_rewritten_by_the_settling(
    engine: Engine, crashed_lagging: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    with engine.connect() as connection:
        [(at, _event_id)] = _tails(connection).values()
        count = select(valuation_entries.c.event_id).where(valuation_entries.c.occurred_at >= at)
        assert len(connection.execute(count).all()) > 100
        connection.rollback()
        valuation.settle_site(connection, "S01")
        assert valuation.check(connection) == []


def test_pushed_valuation_with_lags_equals_one_from_scratch(
    master: TestClient, tiny_bounds: list[int]
) -> None:
    """``test_valuation_property``'s property with both bounds 3: late events lag and are
    settled all along (no settling rewrites more than 3), and the end equals a valuation
    from scratch with nothing pending (``check`` names a pending lag)."""
    properties.test_pushed_valuation_equals_one_from_scratch(master)  # type: ignore[call-arg]
    assert max(tiny_bounds) <= BOUND
    assert -1 in tiny_bounds  # keys lagged (and were settled: check found none pending)


def test_transfers_with_lags_equal_a_valuation_from_scratch(
    master: TestClient, tiny_bounds: list[int]
) -> None:
    """The same for transfers both ways: a settled transfer_out carries its new cost to
    the other site."""
    properties.test_transfers_both_ways_pushed_equal_a_valuation_from_scratch(master)  # type: ignore[call-arg]
    assert max(tiny_bounds) <= BOUND
    assert -1 in tiny_bounds


def test_the_push_route_settles_after_its_answer(
    engine: Engine, tiny_bounds: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within settling_deferred (what the push route runs ingest in), the push commits
    with the key lagging and hands back the site to settle; settle_sites (the route's
    background task, once the answer is sent) settles it."""
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    with valuation.settling_deferred() as deferred:
        _push(engine, site, [_late_receipt(site, 41)])
    assert deferred == ["S01"]
    with engine.connect() as connection:
        assert list(_tails(connection)) == [("S01", "PILL")]
    valuation.settle_sites(engine, deferred)
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


def test_the_monitor_settles_a_lag_a_crash_left(
    engine: Engine, crashed_lagging: SiteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no push or reader coming by, the monitor's interval settles it."""
    monkeypatch.setattr(valuation, "settle_site", _SETTLE_SITE)
    assert monitoring.run_pending_settling(engine) == ["S01"]
    assert monitoring.run_pending_settling(engine) == []
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)


def test_chunks_large_enough_for_copy_settle_right(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk of _COPY_FROM_ROWS entries goes through PostgreSQL's COPY and one UPDATE
    bounded to the chunk's moments (the rest of the tail is the next chunk's)."""
    monkeypatch.setattr(valuation, "LAG_AFTER", BOUND)
    monkeypatch.setattr(valuation, "SETTLE_CHUNK", valuation._COPY_FROM_ROWS)
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    assert TAIL > valuation._COPY_FROM_ROWS + 40
    _push(engine, site, [_late_receipt(site, 11)])  # before all but the first movements
    with engine.connect() as connection:
        assert _tails(connection) == {}
        _assert_equal_to_from_scratch(connection)
        assert valuation.check(connection) == []


def test_a_push_reads_its_states_and_pending_rows_in_one_statement(
    engine: Engine, crashed_lagging: SiteLedger
) -> None:
    """The union a push reads gives what the two reads it replaces give."""
    site = crashed_lagging
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            valuation_pending.insert().values(
                pending_id="p-1", site_id="S01", link="transfer_order:T1:1", recorded_at=T0
            )
        )
    events = [
        LedgerEvent.model_validate(site.event("sale", "-1", item=item, occurred_at=_at(9)))
        for item in ("PILL", "NONE-SUCH")
    ]
    with engine.connect() as connection:
        states, pending = valuation._states_and_pending(connection, events)
        keys = [("S01", "PILL"), ("S01", "NONE-SUCH")]
        assert states == valuation._read_states(connection, keys)
        assert list(states) == [("S01", "PILL")]
        apart = driver.rows(
            connection,
            driver.prepared(valuation._PENDING_OF_SITE, connection.dialect),
            {"b_site": "S01"},
        )
        assert pending is not None
        assert sorted(map(tuple, pending)) == sorted(map(tuple, apart))
        assert len(pending) == 2  # the lag's boundary and the transfer's link
        connection.rollback()
