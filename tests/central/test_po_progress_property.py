"""A rebuild of PO progress from the ledger equals what the pushes built incrementally,
for any run of receipts (right and wrong lines, sites, items and units, over-receipts)."""

from __future__ import annotations

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
