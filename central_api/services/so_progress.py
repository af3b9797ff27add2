"""SO progress: what has been shipped of each sales order line, as a ledger projection.

Registered as the projection ``so_progress`` (:mod:`central_api.services.projections`), it
runs with every push's accepted events and with every booking of central's own events, so
a shipment confirmed at central (:mod:`central_api.services.shipping`) and one picked and
packed at an edge later move the order the same way. Only an ``issue`` naming an SO line
(``doc_type = "sales_order"``, ``doc_id``, ``doc_line``) counts:

* its quantity, in the item's base unit, is added to the line's ``shipped_qty``;
* it consumes the line's reservation of the lot it names first; what it ships beyond that
  lot's reservation (a lot swapped in at picking, FEFO allowed) is taken off the line's
  other reservations, first expiry first, so the line never holds more than it still needs;
* an order whose every line is shipped in full closes by itself (``ended_at``, no reason);
  its version moves with every shipment, so a person's stale ``If-Match`` no longer matches.

A fact is never refused: an event naming a line that does not exist, of another site, of
another item or in a unit the item does not have is kept in the ledger and not counted
(the edge's picking, later, names only lines it was sent).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, delete, select, update

from central_api.models.master import item_units
from central_api.models.sales import sales_order_lines, sales_orders, sales_reservations
from central_api.models.stock import NO_LOT
from central_api.services.projections import AcceptedEvents
from jxc.contract import EventKind, LedgerEvent

NAME = "so_progress"
SALES_ORDER = "sales_order"
CONFIRMED = "confirmed"
CLOSED = "closed"
_ZERO = Decimal(0)


@dataclass(slots=True)
class _Line:
    item_code: str
    base_uom: str
    base_qty: Decimal
    shipped: Decimal
    held: dict[str, Decimal] = field(default_factory=dict)
    """Reserved qty per lot, in FEFO order."""
    before: dict[str, Decimal] = field(default_factory=dict)


def _shipments(accepted: AcceptedEvents) -> list[LedgerEvent]:
    return [
        event
        for event in accepted.events
        if event.doc_type == SALES_ORDER and event.kind is EventKind.ISSUE
    ]


def _read(connection: Connection, so_ids: list[str]) -> dict[tuple[str, int], _Line]:
    lines = {
        (row.so_id, row.line_no): _Line(
            item_code=row.item_code,
            base_uom=row.base_uom,
            base_qty=row.base_qty,
            shipped=row.shipped_qty,
        )
        for row in connection.execute(
            select(sales_order_lines).where(sales_order_lines.c.so_id.in_(so_ids))
        ).all()
    }
    for row in connection.execute(
        select(sales_reservations)
        .where(sales_reservations.c.so_id.in_(so_ids))
        .order_by(
            sales_reservations.c.expiry.is_(None),
            sales_reservations.c.expiry,
            sales_reservations.c.lot,
        )
    ).all():
        line = lines.get((row.so_id, row.line_no))
        if line is not None:
            line.held[row.lot] = row.qty
            line.before[row.lot] = row.qty
    return lines


def _consume(line: _Line, lot: str, qty: Decimal) -> None:
    """Take ``qty`` off the line's reservations: ``lot`` first, then first expiry first."""
    for each in [lot, *(other for other in line.held if other != lot)]:
        if qty <= 0:
            return
        taken = min(line.held.get(each, _ZERO), qty)
        if taken > 0:
            line.held[each] -= taken
            qty -= taken


def project(connection: Connection, accepted: AcceptedEvents) -> None:
    """Count the shipments among ``accepted`` (see the module's rules)."""
    named = _shipments(accepted)
    if not named:
        return
    so_ids = sorted({str(event.doc_id) for event in named})
    orders = {
        row.so_id: row
        for row in connection.execute(
            select(sales_orders.c.so_id, sales_orders.c.site_id, sales_orders.c.status).where(
                sales_orders.c.so_id.in_(so_ids)
            )
        ).all()
    }
    lines = _read(connection, so_ids)
    factors: dict[tuple[str, str], Decimal | None] = {}
    touched: dict[str, set[int]] = defaultdict(set)
    for event in named:
        key = (str(event.doc_id), int(event.doc_line or 0))
        line, order = lines.get(key), orders.get(key[0])
        if line is None or order is None or order.site_id != accepted.site_id:
            continue
        if event.item != line.item_code:
            continue
        factor: Decimal | None = Decimal(1)
        if event.uom != line.base_uom:
            if (event.item, event.uom) not in factors:
                factors[(event.item, event.uom)] = connection.execute(
                    select(item_units.c.factor).where(
                        item_units.c.item_code == event.item, item_units.c.uom == event.uom
                    )
                ).scalar_one_or_none()
            factor = factors[(event.item, event.uom)]
        if factor is None:
            continue
        qty = -event.qty * factor
        line.shipped += qty
        _consume(line, NO_LOT if event.lot is None else event.lot, qty)
        touched[key[0]].add(key[1])
    _write(connection, lines, touched, orders, accepted)


def _write(
    connection: Connection,
    lines: dict[tuple[str, int], _Line],
    touched: dict[str, set[int]],
    orders: dict[str, Any],
    accepted: AcceptedEvents,
) -> None:
    for so_id, line_nos in touched.items():
        for line_no in sorted(line_nos):
            line = lines[(so_id, line_no)]
            connection.execute(
                update(sales_order_lines)
                .where(sales_order_lines.c.so_id == so_id, sales_order_lines.c.line_no == line_no)
                .values(shipped_qty=line.shipped)
            )
            for lot, qty in line.held.items():
                if qty == line.before.get(lot):
                    continue
                where = (
                    sales_reservations.c.so_id == so_id,
                    sales_reservations.c.line_no == line_no,
                    sales_reservations.c.lot == lot,
                )
                if qty > 0:
                    connection.execute(update(sales_reservations).where(*where).values(qty=qty))
                else:
                    connection.execute(delete(sales_reservations).where(*where))
        done = all(
            line.shipped >= line.base_qty for (owner, _no), line in lines.items() if owner == so_id
        )
        values: dict[str, object] = {"updated_at": accepted.received_at}
        if done and orders[so_id].status == CONFIRMED:
            values.update(status=CLOSED, ended_at=accepted.received_at)
            connection.execute(
                delete(sales_reservations).where(sales_reservations.c.so_id == so_id)
            )
        connection.execute(
            update(sales_orders)
            .where(sales_orders.c.so_id == so_id)
            .values(version=sales_orders.c.version + 1, **values)
        )
