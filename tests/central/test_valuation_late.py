"""A late event re-values a long tail of its (site, item) at the driver's level, and
the result still equals a valuation from scratch (issue 17).

:func:`valuation._revalue` reads the stored entries as the driver's tuples, replays
moving average inline (:func:`valuation._replay_average`) and rewrites the changed
entries by the driver (SQLite: ``executemany`` by rowid; PostgreSQL: ``COPY`` into a
temporary table and one ``UPDATE ... FROM``, taken from 200 rows on, so the tails here
are longer). Shown here: the inline replay equals :func:`valuation.apply` on random
movements; on both databases, late events in the middle of, before the first of, and
tied with the movements of long histories of a moving-average and a FIFO item, a method
changed under a history, and a transfer whose cost a late receipt changes, carried into
a long tail at the receiving site.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, update

from central_api.core.db import write_transaction
from central_api.models import items
from central_api.services import valuation
from central_api.services.ingest import _COPY_FROM_ROWS
from central_api.services.valuation import FIFO, MOVING_AVERAGE, Move, State, apply
from tests.central.conftest import SiteLedger
from tests.central.test_valuation_pending import _assert_equal_to_from_scratch, _push

T0 = datetime(2026, 10, 1, tzinfo=UTC)
TAIL = _COPY_FROM_ROWS + 60
"""Movements per history: more than the rows from which PostgreSQL copies the updates."""


# --- the inline replay against apply() ----------------------------------------------------

_quantity = st.integers(-80, 80).map(lambda n: n * 500_000) | st.integers(-40_000_000, 40_000_000)
"""Round quantities (halves: exact ties when rounding) or any number of micro-units."""
_cost = st.integers(0, 999).map(lambda n: n * 10_000) | st.integers(0, 9_999_999)


@settings(max_examples=500, deadline=None)
@given(
    start=st.tuples(
        st.integers(-60, 60).map(lambda n: n * 500_000) | st.integers(-30_000_000, 30_000_000),
        st.integers(-9, 9) | st.integers(-90_000_000, 90_000_000),
        _cost,
    ),
    moves=st.lists(st.tuples(_quantity, st.none() | _cost), max_size=40),
)
def test_the_inline_moving_average_replay_is_apply(
    start: tuple[int, int, int], moves: list[tuple[int, int | None]]
) -> None:
    """Same results and end state as :func:`apply`, negative stock and odd roundings
    included (a state of negative quantity and any value, zero quantities, costs with
    all six decimals)."""
    qty, value, last = start
    by_apply = State(MOVING_AVERAGE, qty, value, last)
    expected = [
        tuple(apply(by_apply, Move(f"e{n}", T0, "x", q, cost, "event")))
        for n, (q, cost) in enumerate(moves)
    ]
    inline = State(MOVING_AVERAGE, qty, value, last)
    got = valuation._replay_average(inline, [q for q, _ in moves], [c for _, c in moves])
    assert got == expected
    assert (inline.qty, inline.value, inline.last_cost) == (
        by_apply.qty,
        by_apply.value,
        by_apply.last_cost,
    )


# --- long tails on both databases ----------------------------------------------------------


def _at(minute: int) -> str:
    return (T0 + timedelta(minutes=minute)).isoformat()


def _items(engine: Engine, **methods: str) -> None:
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            insert(items),
            [
                {
                    "item_code": code,
                    "name": code,
                    "uom": "pcs",
                    "active": True,
                    "version": 1,
                    "updated_at": T0,
                    "valuation": method,
                }
                for code, method in methods.items()
            ],
        )


def _history(ledger: SiteLedger, item: str, *, first_minute: int = 10) -> list[dict[str, Any]]:
    """``TAIL`` movements two minutes apart: sales run ahead of receipts at first
    (negative stock), receipts at seven different costs, now and then two movements at
    one instant (a tie, ordered by event id)."""
    events = []
    for n in range(TAIL):
        minute = first_minute + 2 * (n - (n % 11 == 1))  # every 11th ties with the one before
        if n % 3 == 0 and n > 4:
            cost = f"{1 + n % 7}.{n % 10}5"
            events.append(
                ledger.event("receipt", "6", item=item, unit_cost=cost, occurred_at=_at(minute))
            )
        else:
            qty = "-2.5" if n % 5 else "-1"
            events.append(ledger.event("sale", qty, item=item, occurred_at=_at(minute)))
    return events


def _push_all(engine: Engine, ledger: SiteLedger, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 100):
        _push(engine, ledger, events[start : start + 100])


@pytest.fixture
def rewritten(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many entries each rewrite of one (site, item) rewrote."""
    sizes: list[int] = []
    real = valuation._update_entries

    def counted(connection: Any, key: Any, since: Any, rows: Any, until: Any = None) -> None:
        sizes.append(len(rows))
        real(connection, key, since, rows, until)

    monkeypatch.setattr(valuation, "_update_entries", counted)
    return sizes


def test_late_events_in_long_tails_equal_a_valuation_from_scratch(
    engine: Engine, rewritten: list[int]
) -> None:
    _items(engine, PILL=MOVING_AVERAGE, BOLT=FIFO)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL") + _history(site, "BOLT"))
    with engine.connect() as connection:
        _assert_equal_to_from_scratch(connection)

    for late in (
        # In the middle, at its own instant; tied with a stored movement; before the first
        # movement of each (an issue first: the whole history starts from negative stock).
        [site.event("receipt", "9", item="PILL", unit_cost="3.333", occurred_at=_at(301))],
        [site.event("receipt", "4", item="BOLT", unit_cost="0.7", occurred_at=_at(300))],
        [
            site.event("sale", "-1.5", item="PILL", occurred_at=_at(1)),
            site.event("receipt", "2", item="BOLT", unit_cost="5", occurred_at=_at(2)),
            site.event("sale", "-3", item="PILL", occurred_at=_at(99_999)),  # and a new one
        ],
    ):
        rewritten.clear()
        _push(engine, site, late)
        assert max(rewritten) >= _COPY_FROM_ROWS // 2, rewritten
        with engine.connect() as connection:
            _assert_equal_to_from_scratch(connection)
    assert max(rewritten) > _COPY_FROM_ROWS  # the PostgreSQL COPY path ran too


def test_a_changed_method_revalues_the_whole_history(engine: Engine) -> None:
    """The item's method changes under a long history; its next movement (in order)
    re-values every stored entry of the key with the new method, from nothing."""
    _items(engine, PILL=MOVING_AVERAGE)
    site = SiteLedger("S01")
    _push_all(engine, site, _history(site, "PILL"))
    for method in (FIFO, MOVING_AVERAGE):
        with engine.connect() as connection, write_transaction(connection):
            connection.execute(
                update(items).where(items.c.item_code == "PILL").values(valuation=method)
            )
        _push(engine, site, [site.event("sale", "-1", item="PILL", occurred_at=_at(99_999))])
        with engine.connect() as connection:
            _assert_equal_to_from_scratch(connection)


def test_a_late_receipt_carries_a_new_transfer_cost_into_a_long_tail(
    engine: Engine, rewritten: list[int]
) -> None:
    """S01 ships tea to S02 early; S02's transfer_in is followed by a long history. A
    late receipt at S01 before the shipment changes what it cost, which S02 takes after
    the push's commit (``valuation_pending``) and re-values its whole tail with."""
    s01, s02 = SiteLedger("S01"), SiteLedger("S02")
    line = {"doc_type": "transfer_order", "doc_id": "TR1", "doc_line": 1}
    _push(
        engine,
        s01,
        [
            s01.event("receipt", "100", item="TEA", unit_cost="8", occurred_at=_at(2)),
            s01.event("transfer_out", "-40", item="TEA", occurred_at=_at(4), **line),
        ],
    )
    inbound = s02.event("transfer_in", "40", item="TEA", occurred_at=_at(6), **line)
    _push_all(engine, s02, [inbound, *_history(s02, "TEA")])
    with engine.connect() as connection:
        _assert_equal_to_from_scratch(connection)

    rewritten.clear()
    _push(
        engine, s01, [s01.event("receipt", "100", item="TEA", unit_cost="12", occurred_at=_at(1))]
    )
    assert max(rewritten) > _COPY_FROM_ROWS, rewritten  # S02's tail, settled after commit
    with engine.connect() as connection:
        _assert_equal_to_from_scratch(connection)
