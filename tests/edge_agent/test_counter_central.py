"""Central books a store's counter sales and refunds (the real central in-process, on SQLite
and PostgreSQL; a real ledger file; the agent's own puller and pusher).

The store's counter sells while central is unreachable (nothing is pushed), FEFO from the
lots the edge received; then the ledger syncs: every sale is booked exactly once, stock is
right per lot, the revenue of each sale line is in ``retail_sales`` next to the cost of
goods valuation gave the same event, and a refund takes both back. A counter event without
a readable price is kept (its stock moved) and books no revenue.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from central_api.models import retail_sales, valuation_entries
from central_api.services.retail import takings
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations import counter as till
from edge_agent.stations.counter import CounterStation
from edge_agent.sync import Pusher
from jxc.contract import EventKind
from jxc.paths import STOCK_AVAILABLE
from tests.central.conftest import (  # noqa: F401 (the real central's fixtures)
    client,
    database_url,
    postgres_session,
    sqlite_template,
)
from tests.central.test_master_data import ok
from tests.edge_agent.site_kit import (  # noqa: F401 (the ledger fixture)
    GTIN,
    Scanner,
    day,
    ledger,
    offline_push,
    pill_site,
    pull,
    receive,
)

SALES = 1000
plain = Scanner("till-1").plain


def test_offline_counter_sales_and_a_refund_are_booked_once_with_revenue(
    client: TestClient,  # noqa: F811 (the fixture)
    ledger: Ledger,  # noqa: F811 (the fixture)
) -> None:
    pill_site(client, {"SHOP": "storage"}, customer=False, cost="4")
    catalog = Catalog(ledger)
    pusher = Pusher(ledger, client)
    pull(catalog, pusher.client)
    for lot, offset, qty in (("L1", 30, "600"), ("L2", 90, "600"), ("OLD", -2, "50")):
        receive(ledger, lot, day(offset), qty, location="SHOP", unit_cost=Decimal(4))
    pusher.run()
    assert ledger.counts().pending == 0

    # Central goes away: the pusher cannot reach it, the counter sells on.
    station = CounterStation(ledger, catalog, location="SHOP", prices={"PILL": Decimal("9.99")})
    for n in range(SALES):
        station.on_scan(plain(GTIN))
        station.on_scan(plain("PAY cash" if n % 2 else "PAY card"))
    assert offline_push(ledger) == SALES
    refund = station.on_scan(plain("REFUND S01-R00000007"))
    assert isinstance(refund, till.Receipt)
    assert refund.code == f"S01-R{SALES + 1:08d}"
    totals = station.day_totals(datetime.now(UTC).date())
    assert (totals.sales, totals.refunds) == (SALES, 1)
    assert totals.by_payment == {
        "card": Decimal("4995.00") - Decimal("9.99"),
        "cash": Decimal("4995.00"),
    }

    # A counter event whose ref does not read as one (written by hand): kept, no revenue.
    ledger.append(
        EventDraft(
            kind=EventKind.SALE, item="PILL", lot="L2", expiry=day(90), location="SHOP",
            qty=Decimal(-1), uom="EA", ref="sold by hand", doc_type="retail_receipt",
            doc_id="S01-R99999999", doc_line=1,
        )
    )  # fmt: skip

    # Central is back: one push drains the backlog, a second one finds nothing to send.
    pusher.run()
    pusher.run()
    assert ledger.counts().pending == 0
    assert ledger.counts().dead == 0

    stock = ok(client.get(STOCK_AVAILABLE, params={"site_id": "S01", "item": "PILL"}))
    on_hand = {lot["lot"]: Decimal(lot["on_hand"]) for lot in stock["lots"]}
    # FEFO: L1 (30 days) is sold out first, then L2; the expired lot is never touched;
    # the refunded unit went back to the lot it was sold from (L1, sale no. 7).
    assert on_hand == {"L1": Decimal(1), "L2": Decimal(199), "OLD": Decimal(50)}

    engine = client.app.state.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        count, revenue = connection.execute(
            select(func.count(), func.sum(retail_sales.c.amount))
        ).one()
        assert count == SALES + 1  # every sale once, and the refund
        booked = takings(connection, site_id="S01", since=day(-1), until=day(1))
        assert booked.by_payment == totals.by_payment
        assert (booked.sales, booked.refunds) == (SALES, 1)
        refund_row = connection.execute(
            select(retail_sales).where(retail_sales.c.refund.is_not(None))
        ).one()
        assert (refund_row.receipt, refund_row.line_no, refund_row.lot) == (
            "S01-R00000007", 1, "L1",
        )  # fmt: skip
        assert (refund_row.qty, refund_row.amount, refund_row.payment) == (
            Decimal(-1), Decimal("-9.99"), "card",
        )  # fmt: skip
        # Gross margin of the counter: revenue less the cost valuation gave those events
        # (a sale's cost of goods; a refund's value back in stock at the running cost).
        cogs, back = connection.execute(
            select(func.sum(valuation_entries.c.cogs), func.sum(valuation_entries.c.in_value)).join(
                retail_sales, retail_sales.c.event_id == valuation_entries.c.event_id
            )
        ).one()
    assert Decimal(revenue) == Decimal("9980.01")
    assert (Decimal(cogs), Decimal(back)) == (Decimal(SALES * 4), Decimal(4))  # not the hand's
    assert Decimal(revenue) - Decimal(cogs) + Decimal(back) == Decimal("5984.01")
