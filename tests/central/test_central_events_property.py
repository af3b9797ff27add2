"""Central's own stream mixed with an edge's, for any run of documents: edge receipts
(into storage or quarantine), central receipts (accepted, quarantined, rejected), QC
releases and rejections, purchase returns, some of them refused.

Whatever the run: central's seq per site is gapless from 1 (a refused booking gives its
numbers back); every stock balance equals the sum of both streams' events for its key;
and a rebuild of PO progress from the union of both streams equals what the bookings and
pushes built incrementally. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from central_api.models import NO_LOT, central_events, stock_balances
from central_api.services import po_progress
from central_api.services.central_events import ledger_union
from jxc.paths import PURCHASE_RECEIPTS, PURCHASE_RETURNS, SYNC_EVENTS
from tests.central.conftest import SiteLedger
from tests.central.test_purchasing import approved_po, master
from tests.central.test_receiving import shop

__all__ = ["master", "shop"]  # fixtures, imported to be used here

_UNIT = {1: ("PILL", "片"), 2: ("TEA", "kg")}
_qty = st.integers(1, 60).map(str)
_line = st.sampled_from([1, 2])
_step = st.one_of(
    st.tuples(st.just("edge"), _line, _qty, st.sampled_from(["A1", "QC"])),
    st.tuples(
        st.just("receive"), _line, _qty, st.sampled_from(["accepted", "quarantine", "rejected"])
    ),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("reject"), st.integers(0, 5)),
    st.tuples(st.just("return"), _line, _qty, st.sampled_from(["A1", "QC"])),
)


def _run(client: TestClient, po_id: str, ledger: SiteLedger, step: tuple[Any, ...]) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    kind = step[0]
    if kind == "edge":
        _, line, qty, location = step
        item, uom = _UNIT[line]
        event = ledger.event(
            "receipt",
            qty,
            item=item,
            uom=uom,
            location=location,
            doc_type="purchase_order",
            doc_id=po_id,
            doc_line=line,
        )
        assert client.post(SYNC_EVENTS, json=ledger.batch([event])).status_code == 200
    elif kind == "receive":
        _, line, qty, qc = step
        answer = client.post(
            PURCHASE_RECEIPTS,
            json={
                "po_id": po_id,
                "lines": [{"po_line": line, "qty": qty, "qc": qc, "location": "A1"}]
                if qc == "accepted"
                else [{"po_line": line, "qty": qty, "qc": qc}],
            },
        )
        assert answer.status_code in (201, 409), answer.text
        if answer.status_code == 201 and qc == "quarantine":
            state.quarantined.append(answer.json()["receipt_id"])
    elif kind in ("release", "reject"):
        if not state.quarantined:
            return
        receipt_id = state.quarantined[step[1] % len(state.quarantined)]
        answer = client.post(
            f"{PURCHASE_RECEIPTS}/{receipt_id}/{kind}", json={"line_no": 1, "location": "A1"}
        )
        assert answer.status_code in (200, 409), answer.text
    else:
        _, line, qty, location = step
        answer = client.post(
            PURCHASE_RETURNS,
            json={
                "po_id": po_id,
                "reason": "property",
                "lines": [{"po_line": line, "qty": qty, "location": location}],
            },
        )
        assert answer.status_code in (201, 409), answer.text


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=8))
def test_two_streams_keep_balances_and_progress_rebuildable(
    shop: TestClient, steps: list[tuple[Any, ...]]
) -> None:
    state = shop.app.state  # type: ignore[attr-defined]
    if not hasattr(state, "quarantined"):
        state.ledger = SiteLedger("S01")
    state.quarantined = []
    po_id = approved_po(shop)["po_id"]
    for step in steps:
        _run(shop, po_id, state.ledger, step)
    with state.engine.connect() as connection:
        seqs = connection.execute(
            select(central_events.c.seq)
            .where(central_events.c.site_id == "S01")
            .order_by(central_events.c.seq)
        ).scalars()
        held = list(seqs)
        assert held == list(range(1, len(held) + 1))
        union = ledger_union("site_id", "location", "item", "lot", "qty").subquery()
        summed: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
        for row in connection.execute(select(union)):
            summed[(row.site_id, row.location, row.item, row.lot or NO_LOT)] += row.qty
        balances = {
            (row.site_id, row.location, row.item, row.lot): row.qty
            for row in connection.execute(select(stock_balances))
        }
        assert balances == dict(summed)
        incremental = po_progress.progress(connection)
        connection.rollback()
        with connection.begin() as transaction:
            po_progress.rebuild(connection)
            rebuilt = po_progress.progress(connection)
            transaction.rollback()
    assert rebuilt == incremental


def test_central_receipts_racing_edge_pushes_lose_nothing(shop: TestClient) -> None:
    """The booking locks the site row a push locks: a central receipt and a push of the
    same site, at the same moment, both count on the PO line (no lost update)."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415
    from threading import Barrier  # noqa: PLC0415

    from central_api.services import receiving  # noqa: PLC0415
    from central_api.services.audit import system_context  # noqa: PLC0415
    from central_api.services.ingest import ingest_batch  # noqa: PLC0415
    from central_api.services.projections import built_in_projections  # noqa: PLC0415
    from jxc.contract import PushBatch  # noqa: PLC0415

    po_id = approved_po(shop)["po_id"]
    engine = shop.app.state.engine  # type: ignore[attr-defined]
    ledger = SiteLedger("S01")
    one = PushBatch.model_validate(
        ledger.batch(
            [
                ledger.event(
                    "receipt",
                    "1",
                    item="PILL",
                    uom="片",
                    location="A1",
                    doc_type="purchase_order",
                    doc_id=po_id,
                    doc_line=1,
                )
                for _ in range(3)
            ]
        )
    )
    batches = [one] * 3  # the same push three times at once: applied once
    start = Barrier(6)

    def push(batch: PushBatch) -> None:
        with engine.connect() as connection:
            start.wait()
            ingest_batch(
                connection=connection,
                batch=batch,
                received_at=datetime.now(UTC),
                projections=built_in_projections(),
            )

    def book(_n: int) -> None:
        with engine.connect() as connection:
            start.wait()
            receiving.create_receipt(
                connection,
                po_id=po_id,
                note="",
                lines=[receiving.ReceiptLineInput(po_line=1, qty=Decimal(10), location="A1")],
                actor="racer",
                visible=None,
                audit=system_context("race"),
                projections=built_in_projections(),
            )

    with ThreadPoolExecutor(6) as pool:
        done = [pool.submit(push, batch) for batch in batches]
        done += [pool.submit(book, n) for n in range(3)]
        for future in done:
            future.result()
    with engine.connect() as connection:
        received = connection.execute(
            select(po_progress.purchase_order_lines.c.received_qty).where(
                po_progress.purchase_order_lines.c.po_id == po_id,
                po_progress.purchase_order_lines.c.line_no == 1,
            )
        ).scalar_one()
    assert received == Decimal(33)
