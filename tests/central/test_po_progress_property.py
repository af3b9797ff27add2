"""A rebuild of PO progress from the ledger equals what the pushes built incrementally,
for any run of receipts (right and wrong lines, sites, items and units, over-receipts)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central_api.services import po_progress
from jxc.paths import PURCHASE_ORDERS, SYNC_EVENTS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import approved_po, master, ok

__all__ = ["master"]  # the fixture, imported to be used here

_receipt = st.fixed_dictionaries(
    {
        "site": st.sampled_from(["S01", "S01", "S01", "S02"]),
        "po": st.integers(0, 2),
        "line": st.sampled_from([1, 1, 2, 3]),
        "unit": st.sampled_from([("PILL", "片"), ("PILL", "盒"), ("TEA", "kg"), ("PILL", "瓶")]),
        "qty": st.decimals(min_value="0.001", max_value="300", places=3),
    }
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=st.lists(st.lists(_receipt, min_size=1, max_size=6), min_size=1, max_size=3))
def test_rebuild_equals_incremental(
    master: TestClient, batches: list[list[dict[str, Any]]]
) -> None:
    state = master.app.state  # type: ignore[attr-defined]
    if not hasattr(state, "po_ids"):
        first, second = approved_po(master)["po_id"], approved_po(master)["po_id"]
        third = approved_po(master)["po_id"]
        ok(master.post(f"{PURCHASE_ORDERS}/{third}/cancel"))
        state.po_ids = [first, second, third]
        state.ledgers = {site: SiteLedger(site) for site in ("S01", "S02")}
    for batch in batches:
        for site, ledger in state.ledgers.items():
            events = []
            for r in batch:
                if r["site"] != site:
                    continue
                item, uom = r["unit"]
                events.append(
                    ledger.event(
                        "receipt",
                        str(r["qty"]),
                        item=item,
                        uom=uom,
                        location=f"L-{uom}",  # one balance per unit
                        doc_type="purchase_order",
                        doc_id=state.po_ids[r["po"]],
                        doc_line=r["line"],
                    )
                )
            if events:
                ok(master.post(SYNC_EVENTS, json=ledger.batch(events)))
    with state.engine.connect() as connection:
        incremental = po_progress.progress(connection)
        connection.rollback()
        with connection.begin() as transaction:
            po_progress.rebuild(connection)
            rebuilt = po_progress.progress(connection)
            transaction.rollback()
    assert rebuilt == incremental


_STATUSES = list(po_progress.PoStatus)


def _tally(lines: list[tuple[Any, ...]], factors: dict[tuple[str, str], Any]) -> Any:
    """A tally over fresh lines, with every unit factor known (no database needed)."""
    tally = po_progress._Tally(
        None,  # type: ignore[arg-type]
        {
            (f"PO-{n}", 1): po_progress._Line(
                f"PO-{n}", 1, site, status, True, item, "PCS", base, over, 0, received
            )
            for n, (site, status, item, base, over, received) in enumerate(lines)
        },
        frozenset({("S01", "Q-1")}),
    )
    tally._factors = dict(factors)
    return tally


@settings(max_examples=100, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(["S01", "S02"]),
            st.sampled_from(_STATUSES),
            st.sampled_from(["PILL", "TEA"]),
            st.integers(0, 50_000_000),
            st.sampled_from([0, 5_000_000, 50_000_000]),
            st.integers(0, 30_000_000),
        ),
        min_size=1,
        max_size=4,
    ),
    receipts=st.lists(
        st.tuples(
            st.sampled_from(["receipt", "receipt", "receipt", "transfer_in", "issue"]),
            st.sampled_from(["S01", "S01", "S02"]),
            st.sampled_from(["PILL", "PILL", "TEA"]),
            st.sampled_from(["PCS", "PCS", "BOX", "KG"]),
            st.integers(0, 5),
            st.integers(-3_000_000, 20_000_000),
            st.sampled_from(["A-1", "Q-1"]),
        ),
        max_size=12,
    ),
)
def test_the_inline_loop_counts_as_apply_does(
    lines: list[tuple[Any, ...]], receipts: list[tuple[Any, ...]]
) -> None:
    """``apply_all`` (the common receipt counted inline) leaves every line, the touched
    set and the exceptions exactly as :meth:`apply` one receipt at a time does."""
    factors = {(item, "BOX"): Decimal(12) for item in ("PILL", "TEA")}
    factors |= {(item, "KG"): None for item in ("PILL", "TEA")}
    made = [
        po_progress._Receipt(
            f"E-{n}", site, item, qty, uom, f"PO-{po}", 1, kind=kind, location=location
        )
        for n, (kind, site, item, uom, po, qty, location) in enumerate(receipts)
    ]
    one_by_one, inline = _tally(lines, factors), _tally(lines, factors)
    for receipt in made:
        one_by_one.apply(receipt)
    inline.apply_all(made)
    assert inline.lines == one_by_one.lines
    assert inline.touched == one_by_one.touched
    assert inline.exceptions == one_by_one.exceptions
