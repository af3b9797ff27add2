"""The recall view (召回): where a lot is, where it came from and who received it.

When a supplier or a regulator recalls a lot, the chain has to answer three questions at
once: which sites and locations still hold it (to block and pull it), which customers and
counters it went out to (to call them back), and which supplier and purchase order it came
in on. Every answer is already in the ledger: each event names its item, lot, site and,
for goods that left or arrived against a document, the document line. So the view reads
the events of the lot from both streams (edge and central, each through its own
``(item, lot)`` index), the balances still holding it, and the transfers carrying it, and
joins the documents for the customer and supplier. Nothing is stored for it.

Scope: a reader sees only their sites' stock and movements; customers (a sales document's
partner) only with ``shipment.read`` or ``sales_order.read``, the rights that show a
customer on a sales document already: a role with only ``stock.read`` learns where the lot
is, not who bought it. No money is shown, so no financial group is needed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from sqlalchemy import Connection, select

from central_api.models.inventory import transfer_lines, transfer_lots, transfer_orders
from central_api.models.items import items
from central_api.models.ledger import central_events, ledger_events
from central_api.models.master import partners
from central_api.models.purchasing import purchase_orders
from central_api.models.sales import sales_orders
from central_api.models.stock import stock_balances
from central_api.services.documents import utc

MAX_EVENTS: Final = 200_000
"""A lot with more events than this is read only that far (a recall reads them all at once)."""

SALES_ORDER: Final = "sales_order"
PURCHASE_ORDER: Final = "purchase_order"
RETAIL_RECEIPT: Final = "retail_receipt"
TRANSFER_ORDER: Final = "transfer_order"


@dataclass(frozen=True, slots=True)
class Holding:
    site_id: str
    location: str
    qty: Decimal
    uom: str


@dataclass(frozen=True, slots=True)
class Flow:
    """What went out to (or came in from) one partner or document, summed."""

    site_id: str
    doc_type: str
    doc_id: str
    partner_code: str
    partner_name: str
    qty: Decimal
    uom: str
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True, slots=True)
class InTransit:
    transfer_id: str
    from_site: str
    to_site: str
    qty: Decimal


@dataclass(frozen=True, slots=True)
class SiteMovements:
    """A site's events of the lot by kind: signed quantity and how many."""

    site_id: str
    kind: str
    qty: Decimal
    uom: str
    events: int


@dataclass(slots=True)
class Recall:
    item: str
    item_name: str
    lot: str
    expiry: date | None
    holdings: list[Holding] = field(default_factory=list)
    in_transit: list[InTransit] = field(default_factory=list)
    suppliers: list[Flow] = field(default_factory=list)
    customers: list[Flow] = field(default_factory=list)
    customers_hidden: bool = False
    counters: list[Flow] = field(default_factory=list)
    movements: list[SiteMovements] = field(default_factory=list)

    @property
    def on_hand(self) -> Decimal:
        return sum((holding.qty for holding in self.holdings), Decimal(0))


def _events(
    connection: Connection, item: str, lot: str, visible: frozenset[str] | None
) -> list[Any]:
    found: list[Any] = []
    for table in (ledger_events, central_events):
        query = select(
            table.c.site_id,
            table.c.kind,
            table.c.qty,
            table.c.uom,
            table.c.occurred_at,
            table.c.expiry,
            table.c.doc_type,
            table.c.doc_id,
        ).where(table.c.item == item, table.c.lot == lot)
        if visible is not None:
            query = query.where(table.c.site_id.in_(sorted(visible)))
        found += connection.execute(query.limit(MAX_EVENTS)).all()
    return found


def _flows(rows: list[Any], names: dict[str, tuple[str, str]], doc_type: str) -> list[Flow]:
    """Sum the events naming documents of ``doc_type`` per (site, document)."""
    grouped: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for row in rows:
        if row.doc_type == doc_type:
            grouped[(row.site_id, row.doc_id, row.uom)].append(row)
    flows = []
    for (site_id, doc_id, uom), events in grouped.items():
        partner_code, partner_name = names.get(doc_id, ("", ""))
        moments = [utc(event.occurred_at) or event.occurred_at for event in events]
        flows.append(
            Flow(
                site_id=site_id,
                doc_type=doc_type,
                doc_id=doc_id,
                partner_code=partner_code,
                partner_name=partner_name,
                qty=abs(sum((event.qty for event in events), Decimal(0))),
                uom=uom,
                first_at=min(moments),
                last_at=max(moments),
            )
        )
    return sorted(flows, key=lambda flow: (flow.first_at, flow.site_id, flow.doc_id))


def _partners_of(
    connection: Connection, table: Any, id_column: Any, partner_column: Any, ids: set[str]
) -> dict[str, tuple[str, str]]:
    if not ids:
        return {}
    rows = connection.execute(
        select(id_column, partner_column, partners.c.name)
        .select_from(table.outerjoin(partners, partners.c.code == partner_column))
        .where(id_column.in_(sorted(ids)))
    ).all()
    return {row[0]: (row[1], row[2] or "") for row in rows}


def recall(
    connection: Connection,
    *,
    item: str,
    lot: str,
    visible: frozenset[str] | None,
    show_customers: bool,
) -> Recall:
    """Everything known about ``lot`` of ``item`` within the reader's sites."""
    name = connection.execute(
        select(items.c.name).where(items.c.item_code == item)
    ).scalar_one_or_none()
    rows = _events(connection, item, lot, visible)
    expiries = [row.expiry for row in rows if row.expiry is not None]
    found = Recall(item=item, item_name=name or "", lot=lot, expiry=min(expiries, default=None))

    balances = select(stock_balances).where(
        stock_balances.c.item == item, stock_balances.c.lot == lot, stock_balances.c.qty != 0
    )
    if visible is not None:
        balances = balances.where(stock_balances.c.site_id.in_(sorted(visible)))
    found.holdings = [
        Holding(row.site_id, row.location, row.qty, row.uom)
        for row in connection.execute(
            balances.order_by(stock_balances.c.site_id, stock_balances.c.location)
        )
    ]

    moving = (
        select(
            transfer_orders.c.transfer_id,
            transfer_orders.c.from_site,
            transfer_orders.c.to_site,
            transfer_lots.c.shipped_qty,
            transfer_lots.c.received_qty,
            transfer_lots.c.lost_qty,
        )
        .join(transfer_orders, transfer_orders.c.transfer_id == transfer_lots.c.transfer_id)
        .join(
            transfer_lines,
            (transfer_lines.c.transfer_id == transfer_lots.c.transfer_id)
            & (transfer_lines.c.line_no == transfer_lots.c.line_no),
        )
        .where(transfer_lots.c.lot == lot, transfer_lines.c.item_code == item)
        .order_by(transfer_orders.c.transfer_id)
    )
    for row in connection.execute(moving):
        if visible is not None and row.from_site not in visible and row.to_site not in visible:
            continue
        left = row.shipped_qty - row.received_qty - row.lost_qty
        if left > 0:
            found.in_transit.append(InTransit(row.transfer_id, row.from_site, row.to_site, left))

    purchase_ids = {row.doc_id for row in rows if row.doc_type == PURCHASE_ORDER}
    found.suppliers = _flows(
        rows,
        _partners_of(
            connection,
            purchase_orders,
            purchase_orders.c.po_id,
            purchase_orders.c.supplier_code,
            purchase_ids,
        ),
        PURCHASE_ORDER,
    )
    if show_customers:
        sales_ids = {row.doc_id for row in rows if row.doc_type == SALES_ORDER}
        found.customers = _flows(
            rows,
            _partners_of(
                connection,
                sales_orders,
                sales_orders.c.so_id,
                sales_orders.c.customer_code,
                sales_ids,
            ),
            SALES_ORDER,
        )
    else:
        found.customers_hidden = any(row.doc_type == SALES_ORDER for row in rows)
    found.counters = _flows(rows, {}, RETAIL_RECEIPT)

    by_kind: dict[tuple[str, str, str], list[Decimal]] = defaultdict(list)
    for row in rows:
        by_kind[(row.site_id, row.kind, row.uom)].append(row.qty)
    found.movements = [
        SiteMovements(site_id, kind, sum(qtys, Decimal(0)), uom, len(qtys))
        for (site_id, kind, uom), qtys in sorted(by_kind.items())
    ]
    return found
