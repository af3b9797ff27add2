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
(the edge's picking names only lines it was sent).

**Picked and packed at an edge** (``edge_agent.stations.picking``): the station books each
pick as such an ``issue`` with ``ref = "sscc <SSCC-18>"``, the logistic unit it was packed
into, and ``" swap <lot>"`` after it when the picker took another lot (FEFO allowed) than
the reserved ``<lot>``. The swap is taken off that reservation first, so the line's
reservation moves from the replaced lot to the picked one exactly; without the swap note
the rest would be taken first expiry first. Each SSCC becomes one shipment (its lines, no
tracking number yet), found again by its ``sscc`` when a unit's events arrive in two pushes.

**Rebuild.** :func:`rebuild` recomputes every line's ``shipped_qty`` from the ledger (edge
and central streams) by the same rules, and closes every confirmed order shipped in full;
a property test (``tests/central/test_so_progress_property.py``) holds it equal to the
incremental result and to the plain sum of the events. Reservations are *not* rebuilt:
they are a person's command (confirm, reserve), not events, and are consumed in place, so
what a line held before its shipments is not in the ledger. The rebuild therefore checks
shipped quantities and closing only; it never reopens an order, and the edge's SSCC
shipments (documents invoices refer to) stay as they are.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from central_api.models.master import item_units
from central_api.models.sales import (
    sales_order_lines,
    sales_orders,
    sales_reservations,
    shipment_lines,
    shipments,
)
from central_api.models.stock import NO_LOT
from central_api.services.central_events import ledger_union
from central_api.services.documents import new_document_id
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


class _Factors:
    """The item's unit factors the events name, read once each (None: no such unit)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._known: dict[tuple[str, str], Decimal | None] = {}

    def shipped(
        self, item_code: str, base_uom: str, item: str, uom: str, qty: Decimal
    ) -> Decimal | None:
        """What an ``issue`` of ``qty`` ``uom`` of ``item`` ships of a line of
        ``item_code`` kept in ``base_uom`` (positive), or None when it does not count:
        another item, or a unit the item does not have. The one rule the projection and
        :func:`rebuild` share, so they cannot drift apart."""
        if item != item_code:
            return None
        if uom == base_uom:
            return -qty
        if (item, uom) not in self._known:
            self._known[(item, uom)] = self.connection.execute(
                select(item_units.c.factor).where(
                    item_units.c.item_code == item, item_units.c.uom == uom
                )
            ).scalar_one_or_none()
        factor = self._known[(item, uom)]
        return None if factor is None else -qty * factor


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


SSCC_PREFIX = "sscc "
SWAP_MARK = " swap "


def edge_pack(ref: str | None) -> tuple[str, str | None] | None:
    """``(sscc, swapped_lot)`` of an edge pick's ``ref``, or None for any other ref."""
    if ref is None or not ref.startswith(SSCC_PREFIX):
        return None
    sscc, _, swapped = ref.removeprefix(SSCC_PREFIX).partition(SWAP_MARK)
    if len(sscc) != 18 or not sscc.isdigit():
        return None
    return sscc, (swapped or None)


def _consume(line: _Line, lot: str, qty: Decimal, swapped: str | None = None) -> None:
    """Take ``qty`` off the line's reservations: ``lot`` first, then the ``swapped`` lot it
    replaced at picking, then first expiry first."""
    first = [lot] if swapped is None or swapped == lot else [lot, swapped]
    for each in [*first, *(other for other in line.held if other not in first)]:
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
            select(
                sales_orders.c.so_id,
                sales_orders.c.site_id,
                sales_orders.c.status,
                sales_orders.c.customer_code,
            ).where(sales_orders.c.so_id.in_(so_ids))
        ).all()
    }
    lines = _read(connection, so_ids)
    factors = _Factors(connection)
    touched: dict[str, set[int]] = defaultdict(set)
    packed: dict[tuple[str, str], list[tuple[LedgerEvent, Decimal, _Line]]] = defaultdict(list)
    for event in named:
        key = (str(event.doc_id), int(event.doc_line or 0))
        line, order = lines.get(key), orders.get(key[0])
        if line is None or order is None or order.site_id != accepted.site_id:
            continue
        qty = factors.shipped(line.item_code, line.base_uom, event.item, event.uom, event.qty)
        if qty is None:
            continue
        line.shipped += qty
        pack = edge_pack(event.ref)
        _consume(line, NO_LOT if event.lot is None else event.lot, qty, pack and pack[1])
        touched[key[0]].add(key[1])
        if pack is not None:
            packed[(key[0], pack[0])].append((event, qty, line))
    _write(connection, lines, touched, orders, accepted)
    for (so_id, sscc), picks in packed.items():
        _book_pack(connection, accepted, orders[so_id], sscc, picks)


def _book_pack(
    connection: Connection,
    accepted: AcceptedEvents,
    order: Any,
    sscc: str,
    picks: list[tuple[LedgerEvent, Decimal, _Line]],
) -> None:
    """The shipment of one logistic unit packed at the edge: made by its first events,
    added to by the rest (a push may end inside a unit)."""
    found = connection.execute(
        select(shipments.c.shipment_id, shipments.c.so_id).where(shipments.c.sscc == sscc)
    ).one_or_none()
    if found is None:
        shipment_id = new_document_id(
            connection, sequence="#shipment", prefix="SH", column=shipments.c.shipment_id
        )
        connection.execute(
            insert(shipments).values(
                shipment_id=shipment_id,
                so_id=order.so_id,
                site_id=accepted.site_id,
                customer_code=order.customer_code,
                tracking_no=None,
                note=f"picked and packed at site {accepted.site_id}, SSCC {sscc}",
                created_by=picks[0][0].actor or f"site {accepted.site_id}",
                created_at=accepted.received_at,
                version=1,
                updated_at=accepted.received_at,
                sscc=sscc,
            )
        )
        last = 0
    elif found.so_id != order.so_id:
        return  # the same SSCC on two orders: a fact kept in the ledger, not a shipment
    else:
        shipment_id = found.shipment_id
        last = connection.execute(
            select(func.coalesce(func.max(shipment_lines.c.line_no), 0)).where(
                shipment_lines.c.shipment_id == shipment_id
            )
        ).scalar_one()
    connection.execute(
        insert(shipment_lines),
        [
            {
                "shipment_id": shipment_id,
                "line_no": last + number,
                "so_line": event.doc_line,
                "item_code": event.item,
                "lot": event.lot,
                "expiry": event.expiry,
                "location": event.location,
                "qty": qty,
                "uom": line.base_uom,
            }
            for number, (event, qty, line) in enumerate(picks, start=1)
        ],
    )


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


@dataclass(slots=True)
class _Rebuilt:
    so_id: str
    line_no: int
    site_id: str
    status: str
    item_code: str
    base_uom: str
    base_qty: Decimal
    shipped: Decimal = _ZERO


def rebuild(
    connection: Connection, *, at: datetime | None = None
) -> dict[tuple[str, int], Decimal]:
    """Recompute every SO line's shipped quantity, and close every confirmed order that
    is shipped in full, from the ledger alone (both streams); returns the quantities.

    Runs in the caller's write transaction. The rules are the projection's (one
    :class:`_Factors` for both). An order the rebuild closes is closed as the projection
    closes one (``ended_at`` = ``at``, default now; no reason; version moved; its
    leftover reservations released). Nothing else moves, on purpose:

    * reservations are not rebuilt: they are made by a person's confirm or reserve at
      central, not by events, and the projection consumes them in place, so the ledger
      holds what was shipped but not what was held before; a rebuild cannot tell a
      missing reservation from one never made. A consistent state keeps every line's
      reservations at most what it still needs (the property test checks it);
    * a closed or cancelled order is never reopened (a person may have closed it short);
    * shipments packed at an edge (one per SSCC) are documents with their own ids that
      invoices refer to; they are kept as they are.
    """
    at = datetime.now(UTC) if at is None else at
    lines = {
        (row.so_id, row.line_no): _Rebuilt(
            so_id=row.so_id,
            line_no=row.line_no,
            site_id=row.site_id,
            status=row.status,
            item_code=row.item_code,
            base_uom=row.base_uom,
            base_qty=row.base_qty,
        )
        for row in connection.execute(
            select(
                sales_order_lines.c.so_id,
                sales_order_lines.c.line_no,
                sales_orders.c.site_id,
                sales_orders.c.status,
                sales_order_lines.c.item_code,
                sales_order_lines.c.base_uom,
                sales_order_lines.c.base_qty,
            ).join(sales_orders, sales_orders.c.so_id == sales_order_lines.c.so_id)
        )
    }
    if not lines:
        return {}
    factors = _Factors(connection)
    union = ledger_union(
        "site_id", "seq", "kind", "item", "qty", "uom", "doc_type", "doc_id", "doc_line"
    ).subquery()
    for row in connection.execute(
        select(union)
        .where(union.c.doc_type == SALES_ORDER, union.c.kind == EventKind.ISSUE.value)
        .order_by(union.c.site_id, union.c.stream, union.c.seq)
    ):
        line = lines.get((row.doc_id, int(row.doc_line or 0)))
        if line is None or line.site_id != row.site_id:
            continue
        qty = factors.shipped(line.item_code, line.base_uom, row.item, row.uom, row.qty)
        if qty is not None:
            line.shipped += qty
    connection.execute(
        update(sales_order_lines)
        .where(
            sales_order_lines.c.so_id == bindparam("b_so"),
            sales_order_lines.c.line_no == bindparam("b_line"),
        )
        .values(shipped_qty=bindparam("b_shipped")),
        [
            {"b_so": line.so_id, "b_line": line.line_no, "b_shipped": line.shipped}
            for _key, line in sorted(lines.items())
        ],
    )
    by_order: dict[str, list[_Rebuilt]] = defaultdict(list)
    for line in lines.values():
        by_order[line.so_id].append(line)
    for so_id, order_lines in sorted(by_order.items()):
        if order_lines[0].status != CONFIRMED:
            continue
        if not all(line.shipped >= line.base_qty for line in order_lines):
            continue
        closed = connection.execute(
            update(sales_orders)
            .where(sales_orders.c.so_id == so_id, sales_orders.c.status == CONFIRMED)
            .values(status=CLOSED, ended_at=at, updated_at=at, version=sales_orders.c.version + 1)
        )
        if closed.rowcount:
            connection.execute(
                delete(sales_reservations).where(sales_reservations.c.so_id == so_id)
            )
    return {key: line.shipped for key, line in lines.items()}


def progress(connection: Connection) -> dict[str, Any]:
    """Every SO line's shipped quantity and every order's status, to compare two states."""
    return {
        "lines": {
            (row.so_id, row.line_no): row.shipped_qty
            for row in connection.execute(
                select(
                    sales_order_lines.c.so_id,
                    sales_order_lines.c.line_no,
                    sales_order_lines.c.shipped_qty,
                )
            )
        },
        "status": {
            row.so_id: row.status
            for row in connection.execute(select(sales_orders.c.so_id, sales_orders.c.status))
        },
    }
