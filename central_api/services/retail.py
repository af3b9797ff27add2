"""Counter sales (零售) at central: the revenue of a store's till, booked as its events arrive.

Registered as the projection ``retail`` (:mod:`central_api.services.projections`), it runs
with every push's accepted events. Only a ``sale`` or ``return`` naming a
``retail_receipt`` line, whose ``ref`` carries a unit price and a payment method
(:mod:`jxc.retail`), counts: it becomes one ``retail_sales`` row keyed by the event, with
the line's money computed as the edge computed it (:func:`jxc.retail.line_amount`), a
sale's positive and a refund's negative. The cost of goods of the same event is the one
valuation gives it (``valuation_entries.event_id``): revenue less that is the gross margin
of the counter, per store, item, day or payment method.

A fact is never refused: a counter event whose ``ref`` does not read as one is kept in the
ledger (its stock moved) and books no revenue; the count is logged. Ingest hands each
event to projections once, so a replayed push books nothing twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import Connection, insert, select

from central_api.models.sales import retail_sales
from central_api.services.projections import AcceptedEvents
from jxc.contract import EventKind
from jxc.retail import RETAIL_RECEIPT, line_amount, parse_ref

log = logging.getLogger("central_api.services.retail")

NAME = "retail"
_COUNTER_KINDS = frozenset({EventKind.SALE, EventKind.RETURN})


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """Book the revenue of the counter events among ``accepted`` (one insert for all)."""
    rows = []
    unread = 0
    for event in accepted.events:
        if event.doc_type != RETAIL_RECEIPT or event.kind not in _COUNTER_KINDS:
            continue
        pos = parse_ref(event.ref)
        if pos is None or event.doc_id is None or event.doc_line is None:
            unread += 1
            continue
        sold = -event.qty  # a sale's qty is negative, a refund's positive
        amount = line_amount(abs(sold), pos.unit_price)
        rows.append(
            {
                "event_id": str(event.event_id),
                "site_id": accepted.site_id,
                "receipt": event.doc_id,
                "line_no": event.doc_line,
                "refund": pos.refund,
                "item_code": event.item,
                "lot": event.lot,
                "qty": sold,
                "uom": event.uom,
                "unit_price": pos.unit_price,
                "amount": amount if sold > 0 else -amount,
                "payment": pos.payment,
                "sold_at": event.occurred_at,
            }
        )
    if rows:
        connection.execute(insert(retail_sales), rows)
    if unread:
        log.warning(
            "counter events without a readable price and payment: no revenue booked",
            extra={"site": accepted.site_id, "events": unread},
        )


@dataclass(frozen=True, slots=True)
class Takings:
    """A store's counter revenue over some days: per payment method, net of refunds."""

    site_id: str
    sales: int
    """Receipts sold."""
    refunds: int
    """Refund slips."""
    by_payment: dict[str, Decimal]

    @property
    def net(self) -> Decimal:
        return sum(self.by_payment.values(), Decimal(0))


def takings(connection: Connection, *, site_id: str, since: date, until: date) -> Takings:
    """The counter revenue central booked for ``site_id`` on days ``since``..``until``
    (UTC, inclusive): what the edge's :func:`edge_agent.stations.counter.day_totals` said
    for those days, once every event has arrived."""
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC)
    rows = connection.execute(
        select(
            retail_sales.c.receipt,
            retail_sales.c.refund,
            retail_sales.c.payment,
            retail_sales.c.amount,
        ).where(
            retail_sales.c.site_id == site_id,
            retail_sales.c.sold_at >= start,
            retail_sales.c.sold_at < end,
        )
    ).all()
    by_payment: dict[str, Decimal] = defaultdict(Decimal)
    sold: set[str] = set()
    refunds: set[str] = set()
    for row in rows:
        by_payment[row.payment] += row.amount
        if row.refund is None:
            sold.add(row.receipt)
        else:
            refunds.add(row.refund)
    return Takings(site_id, len(sold), len(refunds), dict(sorted(by_payment.items())))
