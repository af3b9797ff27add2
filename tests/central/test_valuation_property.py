"""Valuation built push by push equals a valuation from scratch, whatever order the
movements arrive in.

Hypothesis draws movements of a moving-average item and a FIFO item at two sites: receipts
with and without their own cost, issues, sales, write-offs, count gains and losses, each
with an ``occurred_at`` drawn independently of its seq, so later pushes carry events older
than ones already valued (late events) and issues run ahead of receipts (negative stock).
After every run the stored cost of goods per event and value per (site, item) must equal
:func:`~central_api.services.valuation.value_from_scratch`, closing value must be what
came in less cost of goods, and FIFO layers never hold less than nothing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from central_api.models import valuation_entries, valuation_layers, valuation_state
from central_api.models.base import from_micro_units
from central_api.services import valuation
from jxc.paths import ITEMS, SYNC_EVENTS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import master, ok

__all__ = ["master"]  # the fixture, imported to be used here

T0 = datetime(2026, 11, 1, tzinfo=UTC)
_UNITS = {"PILL": "片", "BOLT": "pcs"}

_movement = st.fixed_dictionaries(
    {
        "site": st.sampled_from(["S01", "S01", "S02"]),
        "item": st.sampled_from(["PILL", "BOLT"]),
        "kind": st.sampled_from(
            [
                ("receipt", 1),
                ("receipt", 1),
                ("adjustment", 1),
                ("sale", -1),
                ("issue", -1),
                ("scrap", -1),
                ("adjustment", -1),
            ]
        ),
        "qty": st.decimals(min_value="0.5", max_value="40", places=1),
        "cost": st.none() | st.decimals(min_value="0.01", max_value="9", places=2),
        "minute": st.integers(0, 500),
    }
)


def _event(ledger: SiteLedger, m: dict[str, Any]) -> dict[str, Any]:
    """The wire event of a drawn movement, next in ``ledger``."""
    return ledger.event(
        m["kind"][0],
        str(m["qty"] * m["kind"][1]),
        item=m["item"],
        uom=_UNITS[m["item"]],
        location=f"L-{m['item']}",
        occurred_at=(T0 + timedelta(minutes=m["minute"])).isoformat(),
        **({"unit_cost": str(m["cost"])} if m["cost"] is not None else {}),
    )


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.lists(_movement, min_size=1, max_size=8), min_size=1, max_size=4))
def test_pushed_valuation_equals_one_from_scratch(
    master: TestClient, batches: list[list[dict[str, Any]]]
) -> None:
    state = master.app.state  # type: ignore[attr-defined]
    if not hasattr(state, "ledgers"):
        bolt = {"item_code": "BOLT", "name": "螺栓", "uom": "pcs", "valuation": "fifo"}
        ok(master.post(ITEMS, json=bolt), 201)
        state.ledgers = {site: SiteLedger(site) for site in ("S01", "S02")}
    for batch in batches:
        for site, ledger in state.ledgers.items():
            events = [_event(ledger, m) for m in batch if m["site"] == site]
            if events:
                ok(master.post(SYNC_EVENTS, json=ledger.batch(events)))

    with state.engine.connect() as connection:
        fresh = valuation.value_from_scratch(connection)
        entries = {row.event_id: row for row in connection.execute(select(valuation_entries))}
        states = {
            (row.site_id, row.item): (row.qty, row.value)
            for row in connection.execute(select(valuation_state))
        }
        layers = connection.execute(select(valuation_layers)).all()
        assert valuation.check(connection) == []

    assert {e: (row.cogs, row.variance) for e, row in entries.items()} == {
        e: (from_micro_units(r.cogs), from_micro_units(r.variance))
        for e, r in fresh.results.items()
    }
    assert states == {
        key: (from_micro_units(s.qty), from_micro_units(s.value)) for key, s in fresh.states.items()
    }

    flows: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in entries.values():
        flows[(row.site_id, row.item)] += row.in_value - row.cogs - row.variance
    assert {key: value for key, (_qty, value) in states.items()} == dict(flows)

    held: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for layer in layers:
        assert layer.qty > 0
        assert layer.value >= 0
        held[(layer.site_id, layer.item)] += layer.qty
    for key, (qty, _value) in states.items():
        if key[1] == "BOLT":
            assert held.get(key, Decimal(0)) == max(qty, Decimal(0))


_transfer = st.fixed_dictionaries(
    {
        "from_site": st.sampled_from(["S01", "S02"]),
        "item": st.sampled_from(["PILL", "BOLT"]),
        "qty": st.decimals(min_value="0.5", max_value="20", places=1),
        "out_minute": st.integers(0, 500),
        "in_after": st.integers(1, 120),
    }
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(_movement, max_size=6),
            st.lists(_transfer, max_size=3),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_transfers_both_ways_pushed_equal_a_valuation_from_scratch(
    master: TestClient, batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]]
) -> None:
    """Transfers between the two sites in both directions, dated independently of the
    other movements (each in after its out), so late events at either end cascade into
    the other through chains of transfers (settled after each push's commit,
    ``docs/valuation.md``, "Transfers"): the stored valuation still equals one from
    scratch and ``check`` finds nothing, no pending record left."""
    state = master.app.state  # type: ignore[attr-defined]
    if not hasattr(state, "ledgers"):
        bolt = {"item_code": "BOLT", "name": "螺栓", "uom": "pcs", "valuation": "fifo"}
        ok(master.post(ITEMS, json=bolt), 201)
        state.ledgers = {site: SiteLedger(site) for site in ("S01", "S02")}
        state.transfers = 0
    for movements, transfers in batches:
        pushed: dict[str, list[dict[str, Any]]] = {"S01": [], "S02": []}
        for m in movements:
            pushed[m["site"]].append(_event(state.ledgers[m["site"]], m))
        for t in transfers:
            state.transfers += 1
            to_site = "S02" if t["from_site"] == "S01" else "S01"
            out_at = T0 + timedelta(minutes=t["out_minute"])
            for site, sign, at in (
                (t["from_site"], -1, out_at),
                (to_site, 1, out_at + timedelta(minutes=t["in_after"])),
            ):
                pushed[site].append(
                    state.ledgers[site].event(
                        "transfer_out" if sign < 0 else "transfer_in",
                        str(t["qty"] * sign),
                        item=t["item"],
                        uom=_UNITS[t["item"]],
                        location=f"L-{t['item']}",
                        occurred_at=at.isoformat(),
                        doc_type="transfer_order",
                        doc_id=f"TR{state.transfers}",
                        doc_line=1,
                    )
                )
        for site, events in pushed.items():
            if events:
                ok(master.post(SYNC_EVENTS, json=state.ledgers[site].batch(events)))

    with state.engine.connect() as connection:
        fresh = valuation.value_from_scratch(connection)
        cogs = {
            row.event_id: (row.cogs, row.in_cost)
            for row in connection.execute(select(valuation_entries))
        }
        states = {
            (row.site_id, row.item): (row.qty, row.value)
            for row in connection.execute(select(valuation_state))
        }
        assert [d for d in valuation.check(connection) if d.what != "balance"] == []
    assert cogs == {
        e: (
            from_micro_units(r.cogs),
            None if fresh.moves[e].in_cost is None else from_micro_units(fresh.moves[e].in_cost),
        )
        for e, r in fresh.results.items()
    }
    assert states == {
        key: (from_micro_units(s.qty), from_micro_units(s.value)) for key, s in fresh.states.items()
    }
