"""Valuation: moving average and FIFO, PO prices, late events, negative stock, the read
API's permissions, and ``jxc central check``. Figures are worked out by hand in comments.

The engine's own rules run without a database; the rest on SQLite and PostgreSQL through
real pushes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from central_api.cli import app as cli_app
from central_api.core.db import write_transaction
from central_api.models import (
    central_events,
    stock_balances,
    valuation_entries,
    valuation_layers,
    valuation_state,
)
from central_api.models.base import to_micro_units
from central_api.services import valuation
from central_api.services.central_events import lock_site
from central_api.services.valuation import FIFO, MOVING_AVERAGE, Move, State, apply
from jxc import uuid7
from jxc.contract import EventKind, LedgerEvent
from jxc.paths import ITEMS, VALUATION
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import approved_po, as_user, master, ok, push, receipt

__all__ = ["master"]  # the fixture, imported to be used here

D = Decimal
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def u(amount: str | int) -> int:
    """An amount in the engine's micro-units."""
    return to_micro_units(D(amount))


def _move(number: int, qty: str, cost: str | None = None) -> Move:
    return Move(
        event_id=f"e{number:03d}",
        occurred_at=T0 + timedelta(minutes=number),
        kind="receipt" if D(qty) > 0 else "sale",
        qty=u(qty),
        in_cost=None if cost is None else u(cost),
        cost_source="event" if cost is not None else "running",
    )


def _run(method: str, *moves: Move) -> tuple[State, list[Any]]:
    state = State(method)
    return state, [apply(state, move) for move in moves]


# --- the rules, without a database ---------------------------------------------------------


def test_moving_average_issues_at_the_running_average() -> None:
    state, results = _run(
        MOVING_AVERAGE,
        _move(1, "10", "2"),  # 10 @ 2 = 20
        _move(2, "10", "3"),  # 20 pcs, 50, average 2.5
        _move(3, "-4"),  # 4 × 2.5 = 10
        _move(4, "-16"),  # the rest: all of the remaining 40
    )
    assert [r.cogs for r in results] == [0, 0, u(10), u(40)]
    assert (state.qty, state.value) == (0, 0)


def test_fifo_issues_from_the_oldest_layer_first() -> None:
    state, results = _run(FIFO, _move(1, "10", "2"), _move(2, "10", "3"), _move(3, "-15"))
    assert results[2].cogs == u(35)  # 10 × 2 + 5 × 3
    assert (state.qty, state.value) == (u(5), u(15))
    assert [(layer.qty, layer.value) for layer in state.layers] == [(u(5), u(15))]


def test_a_shortfall_goes_out_at_the_last_cost_and_the_receipt_books_the_difference() -> None:
    for method in (MOVING_AVERAGE, FIFO):
        state, results = _run(
            method,
            _move(1, "10", "2"),  # 10 @ 2
            _move(2, "-15"),  # 10 at 20, the 5 short at the last cost 2: 30
            _move(3, "10", "4"),  # fills the 5 short: they really cost 4, so 10 more
        )
        assert results[1].cogs == u(30)
        assert results[1].shortfall == u(5)
        assert (results[1].qty_after, results[1].value_after) == (u(-5), u(-10))
        assert results[2].variance == u(10)
        assert (state.qty, state.value) == (u(5), u(20))
        # closing value = receipts − cost of goods − variance
        assert state.value == u(20) + u(40) - u(30) - u(10)


def test_a_partly_filled_hole_keeps_its_provisional_cost() -> None:
    state, results = _run(
        MOVING_AVERAGE,
        _move(1, "4", "1"),
        _move(2, "-10"),  # 4 at 4, 6 short at 1: 10; qty −6, value −6
        _move(3, "2", "5"),  # 2 of the 6 filled at 5 = 10; 4 stay short at 1: −4
    )
    assert results[2].variance == u(-6) + u(10) - u(-4)
    assert (state.qty, state.value) == (u(-4), u(-4))


def test_the_engine_rounds_half_to_even_exactly() -> None:
    """Integer micro-units give what Decimal's quantize to six places gives, also where
    a product is wider than Decimal's default 28 digits."""
    assert [valuation.div(n, 2) for n in (1, 3, 5, -1, -3, 7)] == [0, 2, 2, 0, -2, 4]
    assert valuation.div(10, -4) == -2  # -2.5 → -2 (even)
    assert valuation.div(1, 3) == 0
    assert valuation.div(2, 3) == 1
    huge = 9_000_000_000_000_000_001
    assert valuation.div(huge * 3, 6) == 4_500_000_000_000_000_000  # .5 → even
    assert valuation.div(huge * 3 + 2, 6) == 4_500_000_000_000_000_001


# --- through pushes ------------------------------------------------------------------------


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def _state(client: TestClient, site_id: str, item: str) -> dict[str, Any]:
    found = ok(client.get(VALUATION, params={"site_id": site_id, "item": item}))
    assert len(found) == 1, found
    return found[0]


def _entries(client: TestClient, site_id: str, item: str) -> list[dict[str, Any]]:
    return ok(client.get(f"{VALUATION}/entries", params={"site_id": site_id, "item": item}))


def _no_differences(client: TestClient) -> None:
    with client.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        assert valuation.check(connection) == []


def test_receipts_come_in_at_the_po_price_and_a_late_one_revalues(master: TestClient) -> None:
    po = approved_po(master)  # line 1: PILL, 2 箱 at 150 = 240 片, so 1.25 per 片
    s01 = SiteLedger("S01")
    push(
        master,
        s01,
        # 1 盒 = 10 片 at 1.25
        receipt(s01, po["po_id"], 1, "1", uom="盒", location="L-盒", occurred_at=_at(1)),
        s01.event("receipt", "20", item="PILL", uom="片", occurred_at=_at(2)),  # × 1.5
        s01.event("sale", "-6", item="PILL", uom="片", occurred_at=_at(4)),
    )
    # 30 片 worth 12.5 + 30 = 42.5; the sale takes 6 × 42.5 / 30 = 8.5
    state = _state(master, "S01", "PILL")
    assert (state["qty"], state["value"], state["average_cost"]) == ("24", "34", "1.416667")
    entries = _entries(master, "S01", "PILL")
    assert [(e["cost_source"], e["in_cost"], e["cogs"]) for e in entries] == [
        ("po", "1.25", "0"),
        ("purchase_price", "1.5", "0"),
        ("out", None, "8.5"),
    ]

    # An edge was offline: a receipt of 10 片 at 2 that happened before the sale arrives.
    push(
        master,
        s01,
        s01.event("receipt", "10", item="PILL", uom="片", unit_cost="2", occurred_at=_at(3)),
    )
    # Before the sale now 40 片 worth 62.5: the sale's cost becomes 6 × 62.5 / 40 = 9.375.
    entries = _entries(master, "S01", "PILL")
    assert [e["cogs"] for e in entries] == ["0", "0", "0", "9.375"]
    state = _state(master, "S01", "PILL")
    assert (state["qty"], state["value"]) == ("34", "53.125")
    _no_differences(master)


def test_fifo_layers_follow_occurred_at_and_negative_stock_is_corrected(
    master: TestClient,
) -> None:
    ok(
        master.post(
            ITEMS, json={"item_code": "BOLT", "name": "螺栓", "uom": "pcs", "valuation": "fifo"}
        ),
        201,
    )
    s02 = SiteLedger("S02")
    push(
        master,
        s02,
        s02.event("receipt", "10", item="BOLT", unit_cost="3", occurred_at=_at(20)),
        s02.event("sale", "-15", item="BOLT", occurred_at=_at(30)),  # 10 × 3 + 5 short × 3
    )
    assert [e["shortfall"] for e in _entries(master, "S02", "BOLT")] == ["0", "5"]
    assert _state(master, "S02", "BOLT")["qty"] == "-5"
    # The receipt that was really first arrives: the shortfall disappears.
    push(master, s02, s02.event("receipt", "10", item="BOLT", unit_cost="2", occurred_at=_at(10)))
    entries = _entries(master, "S02", "BOLT")
    assert [(e["cogs"], e["shortfall"], e["variance"]) for e in entries] == [
        ("0", "0", "0"),
        ("0", "0", "0"),
        ("35", "0", "0"),  # 10 × 2 from the first layer, 5 × 3 from the second
    ]
    with master.app.state.engine.connect() as connection:  # type: ignore[attr-defined]
        layers = connection.execute(
            select(valuation_layers.c.qty, valuation_layers.c.value).where(
                valuation_layers.c.item == "BOLT"
            )
        ).all()
    assert [tuple(layer) for layer in layers] == [(D(5), D(15))]
    _no_differences(master)


def test_only_financial_roles_of_the_site_read_values(master: TestClient) -> None:
    s01 = SiteLedger("S01")
    push(master, s01, s01.event("receipt", "5", item="TEA", uom="kg", unit_cost="80"))
    clerk = as_user(master, "clerk", ["warehouse_clerk"])
    assert master.get(VALUATION, headers=clerk).status_code == 403
    finance = as_user(master, "fin", ["finance"])
    assert ok(master.get(VALUATION, headers=finance))[0]["value"] == "400"
    elsewhere = as_user(master, "fin-s02", ["finance"], sites=["S02"])
    assert master.get(VALUATION, params={"site_id": "S01"}, headers=elsewhere).status_code == 403
    assert ok(master.get(VALUATION, headers=elsewhere)) == []
    assert master.get(f"{VALUATION}/entries", params={"site_id": "S01"}).status_code == 422


def test_check_names_a_corrupted_balance_and_value(master: TestClient, database_url: str) -> None:
    s01 = SiteLedger("S01")
    push(
        master,
        s01,
        s01.event("receipt", "10", item="TEA", uom="kg", unit_cost="80"),
        s01.event("sale", "-4", item="TEA", uom="kg"),
    )
    runner = CliRunner()
    result = runner.invoke(cli_app, ["check", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert "equal the ledger" in result.output

    engine = master.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(update(valuation_state).values(value=D("999")))
        connection.execute(update(stock_balances).values(qty=D("7")))
    result = runner.invoke(cli_app, ["check", "--database-url", database_url, "--repair"])
    assert result.exit_code == 1
    assert "value S01/TEA: stored qty 6 value 999, ledger says qty 6 value 480" in result.output
    assert "balance S01/A-01/TEA/: stored 7, ledger says 6" in result.output

    # --repair rebuilt the valuation; the balance is ingest's and is only reported.
    result = runner.invoke(cli_app, ["check", "--database-url", database_url])
    assert result.exit_code == 1
    assert "value S01/TEA" not in result.output
    assert "balance S01/A-01/TEA/" in result.output
    with engine.connect() as connection:
        assert connection.execute(select(valuation_entries.c.cogs)).scalars().all() == [0, 320]


# --- transfers: the hook another change will use -------------------------------------------


def _book_transfer_event(
    connection: Any, *, site_id: str, seq: int, kind: str, qty: str, minute: int
) -> None:
    """A transfer event as the transfer documents will book it (``doc_type="transfer_order"``,
    which the contract does not take yet): stored in central's stream and valued, as
    :func:`central_api.services.central_events.book` would."""
    fields: dict[str, Any] = {
        "event_id": str(uuid7()),
        "site_id": site_id,
        "seq": seq,
        "occurred_at": T0 + timedelta(minutes=minute),
        "kind": EventKind(kind),
        "item": "TEA",
        "lot": None,
        "expiry": None,
        "location": "A-01",
        "qty": D(qty),
        "uom": "kg",
        "unit_cost": None,
        "ref": "TR1",
        "device_id": None,
        "actor": "test",
        "doc_type": "transfer_order",
        "doc_id": "TR1",
        "doc_line": 1,
    }
    lock_site(connection, site_id, now=T0)
    connection.execute(central_events.insert().values(**fields, received_at=T0))
    valuation.value_events(connection, [LedgerEvent.model_construct(**fields)], at=T0)


def test_a_transfer_carries_its_cost_and_follows_a_late_revaluation(master: TestClient) -> None:
    s01 = SiteLedger("S01")
    push(
        master,
        s01,
        s01.event("receipt", "10", item="TEA", uom="kg", unit_cost="80", occurred_at=_at(10)),
    )
    engine = master.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection, write_transaction(connection):
        # The receiving site books its transfer_in before the sending site's out arrives:
        # provisional, at its running cost (nothing yet: 0).
        _book_transfer_event(
            connection, site_id="S02", seq=1, kind="transfer_in", qty="4", minute=30
        )
        _book_transfer_event(
            connection, site_id="S01", seq=1, kind="transfer_out", qty="-4", minute=20
        )
    assert _state(master, "S02", "TEA")["value"] == "320"  # 4 × 80, carried over
    # A receipt at S01 from before the transfer arrives late: 20 kg worth 1800, 90 each.
    push(
        master,
        s01,
        s01.event("receipt", "10", item="TEA", uom="kg", unit_cost="100", occurred_at=_at(5)),
    )
    assert _entries(master, "S01", "TEA")[-1]["cogs"] == "360"
    s02 = _entries(master, "S02", "TEA")
    assert [(e["cost_source"], e["in_cost"]) for e in s02] == [("transfer", "90")]
    assert _state(master, "S02", "TEA")["value"] == "360"
    with engine.connect() as connection:
        # Balances: these events skipped booking, which the transfer documents will do.
        assert [d for d in valuation.check(connection) if d.what != "balance"] == []


def test_check_streams_and_names_entries_without_events_and_the_reverse(
    master: TestClient,
) -> None:
    """``check`` reads the ledger a chunk of (site, item)s at a time: with chunks of one
    event every (site, item) is a chunk of its own, and the answer is the same."""
    s01 = SiteLedger("S01")
    push(
        master,
        s01,
        s01.event("receipt", "10", item="TEA", uom="kg", unit_cost="80"),
        s01.event("sale", "-4", item="TEA", uom="kg"),
        s01.event("receipt", "3", item="PILL", uom="片", unit_cost="2"),
    )
    engine = master.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        assert valuation.check(connection, chunk_rows=1) == []
        sale = connection.execute(
            select(valuation_entries).where(valuation_entries.c.kind == "sale")
        ).one()
    with engine.connect() as connection, write_transaction(connection):
        connection.execute(
            valuation_entries.delete().where(valuation_entries.c.event_id == sale.event_id)
        )
        connection.execute(
            valuation_entries.insert().values({**sale._asdict(), "event_id": "no-such-event"})
        )
    with engine.connect() as connection:
        found = {str(d) for d in valuation.check(connection, chunk_rows=1)}
    assert f"entry {sale.event_id}: stored none, ledger says an event" in found
    assert "entry no-such-event: stored an entry, ledger says none" in found
    assert "value S01/PILL" not in " ".join(found)
