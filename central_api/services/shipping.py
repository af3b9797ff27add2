"""Pick lists and shipments (发货) of sales orders, confirmed at central.

A **pick list** is what a confirmed order's reservations say to take: per SO line and
reserved lot, the quantity and the sellable locations of the order's site that hold the
lot, with what each holds. It is read, not stored: the reservations are the document
(they move by confirm, reserve, cancel and by shipments), so a pick list is never stale.
It carries no price: a warehouse clerk reads it. The same reservations reach the order's
site through the change feed as a ``pick_list`` (``services.sales``), for the edge's
picking station; what the edge picks and packs comes back as ``issue`` events that
``so_progress`` books into one shipment per packed unit (SSCC).

A **shipment** is goods sent against one confirmed order from its site, for a site
without an edge (an edge will ship by its own events). It ships *reserved* stock only:
per SO line a quantity, optionally the lot (it must be reserved for that line; without
one the line's reservations are taken first expiry first) and the location (without one,
the sellable locations holding the lot, by code). It is booked at once through central's
own event stream (:mod:`central_api.services.central_events`): one ``issue`` per lot and
location, each naming its SO line, so the ``so_progress`` projection adds to the line's
``shipped_qty``, consumes the reservations and closes the order once every line is
shipped, exactly as it will for an edge's shipments. Partial shipments are the normal
case; shipping more than is reserved is a 409 that says to reserve first. The tracking
number can be given at once or set later (``If-Match``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from typing import Any

from sqlalchemy import Connection, insert, select, update

from central_api.errors import ConflictError, InvalidError
from central_api.models.items import items
from central_api.models.master import locations, partners
from central_api.models.master import sites as site_table
from central_api.models.sales import sales_orders, shipment_lines, shipments
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services import central_events, sales
from central_api.services.audit import AuditContext
from central_api.services.central_events import Movement
from central_api.services.documents import (
    MAX_LINES,
    DocCommand,
    DocumentStateError,
    UnknownDocumentError,
    auditable_rows,
    base_quantity,
    document_write,
    fetch_document,
    list_page,
    locked_document,
    new_document_id,
    plain,
    read_one,
    utc,
)
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.projections import Projections
from central_api.services.sales import UNSELLABLE_KINDS, SoStatus
from jxc.contract import EventKind

SALES_ORDER = "sales_order"
_ZERO = Decimal(0)


# --- pick lists -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PickPlace:
    location: str
    on_hand: Decimal
    """Of the lot at this location, in the item's base unit."""


@dataclass(frozen=True, slots=True)
class PickLine:
    so_line: int
    item_code: str
    lot: str
    expiry: date | None
    qty: Decimal
    uom: str
    places: list[PickPlace]


@dataclass(frozen=True, slots=True)
class PickList:
    so_id: str
    site_id: str
    customer: str
    status: SoStatus
    version: int
    lines: list[PickLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Place:
    location: str
    uom: str
    qty: Decimal
    """In ``uom``, as the balance keeps it."""
    factor: Decimal

    @property
    def base_qty(self) -> Decimal:
        return self.qty * self.factor


def _places(
    connection: Connection,
    site_id: str,
    item_code: str,
    lot: str,
    *,
    factors: dict[str, Decimal],
    only: str | None = None,
) -> list[_Place]:
    """Where the lot is on hand at the site, at sellable locations (a location not in
    the site's master counts as sellable: stock is where the edge says), by code."""
    kind = (
        select(locations.c.kind)
        .where(locations.c.site_id == stock_balances.c.site_id)
        .where(locations.c.code == stock_balances.c.location)
        .scalar_subquery()
    )
    query = (
        select(stock_balances.c.location, stock_balances.c.uom, stock_balances.c.qty, kind)
        .where(
            stock_balances.c.site_id == site_id,
            stock_balances.c.item == item_code,
            stock_balances.c.lot == lot,
            stock_balances.c.qty > 0,
        )
        .order_by(stock_balances.c.location)
    )
    if only is not None:
        query = query.where(stock_balances.c.location == only)
    return [
        _Place(location=row[0], uom=row[1], qty=row[2], factor=factors[row[1]])
        for row in connection.execute(query).all()
        if row[3] not in UNSELLABLE_KINDS and row[1] in factors
    ]


def pick_list(connection: Connection, so_id: str, *, visible: frozenset[str] | None) -> PickList:
    """What to pick for a confirmed order: its reservations and where each lot lies."""
    with read_snapshot(connection):
        so = fetch_document(connection, sales.read_so, "sales order", so_id, visible)
        lines = []
        for line in so.lines:
            _base, factors = sales.unit_factors(connection, line.item_code)
            for held in line.reservations:
                places = _places(connection, so.site_id, line.item_code, held.lot, factors=factors)
                lines.append(
                    PickLine(
                        so_line=line.line_no,
                        item_code=line.item_code,
                        lot=held.lot,
                        expiry=held.expiry,
                        qty=held.qty,
                        uom=line.base_uom,
                        places=[PickPlace(p.location, plain(p.base_qty)) for p in places],
                    )
                )
    return PickList(
        so_id=so.so_id,
        site_id=so.site_id,
        customer=so.customer,
        status=so.status,
        version=so.version,
        lines=lines,
    )


# --- shipments: shapes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShipmentLineInput:
    so_line: int
    qty: Decimal
    uom: str | None = None
    lot: str | None = None
    location: str | None = None


@dataclass(frozen=True, slots=True)
class ShipmentLine:
    line_no: int
    so_line: int
    item_code: str
    lot: str | None
    expiry: date | None
    location: str
    qty: Decimal
    uom: str


@dataclass(frozen=True, slots=True)
class Shipment:
    shipment_id: str
    so_id: str
    site_id: str
    customer: str
    tracking_no: str | None
    note: str
    created_by: str
    created_at: datetime
    version: int
    updated_at: datetime
    lines: list[ShipmentLine] = field(default_factory=list)
    sscc: str | None = None
    """The SSCC of a logistic unit packed at an edge (``so_progress`` books it)."""


def _shipments_with_lines(connection: Connection, rows: Sequence[Any]) -> list[Shipment]:
    by_id: dict[str, list[ShipmentLine]] = defaultdict(list)
    ids = [row.shipment_id for row in rows]
    if ids:
        for line in connection.execute(
            select(shipment_lines)
            .where(shipment_lines.c.shipment_id.in_(ids))
            .order_by(shipment_lines.c.shipment_id, shipment_lines.c.line_no)
        ):
            by_id[line.shipment_id].append(
                ShipmentLine(
                    line_no=line.line_no,
                    so_line=line.so_line,
                    item_code=line.item_code,
                    lot=line.lot,
                    expiry=line.expiry,
                    location=line.location,
                    qty=line.qty,
                    uom=line.uom,
                )
            )
    return [
        Shipment(
            shipment_id=row.shipment_id,
            so_id=row.so_id,
            site_id=row.site_id,
            customer=row.customer_code,
            tracking_no=row.tracking_no,
            note=row.note,
            created_by=row.created_by,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            version=row.version,
            updated_at=utc(row.updated_at),  # type: ignore[arg-type]
            lines=by_id[row.shipment_id],
            sscc=row.sscc,
        )
        for row in rows
    ]


def _read_shipment(
    connection: Connection, shipment_id: str, *, lock: bool = False
) -> Shipment | None:
    return read_one(
        connection,
        shipments,
        shipments.c.shipment_id,
        shipment_id,
        build=lambda rows: _shipments_with_lines(connection, rows),
        lock=lock,
    )


def get_shipment(
    connection: Connection, shipment_id: str, *, visible: frozenset[str] | None = None
) -> Shipment:
    return fetch_document(connection, _read_shipment, "shipment", shipment_id, visible)


def list_shipments(
    connection: Connection,
    *,
    so_id: str | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
    sscc: str | None = None,
) -> tuple[list[Shipment], str | None]:
    """Shipments by id; ``sscc`` finds the logistic unit an edge packed under that
    SSCC-18 (one shipment per unit, ``shipments.sscc`` is unique)."""
    filters = [] if so_id is None else [shipments.c.so_id == so_id]
    if sscc is not None:
        filters.append(shipments.c.sscc == sscc)
    return list_page(
        connection,
        shipments,
        filters=filters,
        scope=(site_id, visible),
        after=after,
        limit=limit,
        build=lambda rows: _shipments_with_lines(connection, rows),
    )


# --- shipments: writing ---------------------------------------------------------------------


def _in_unit(base: Decimal, place: _Place, where: str) -> Decimal:
    """``base`` in the unit the place's balance is kept in, exactly, or a 409."""
    try:
        with localcontext() as exact:
            exact.prec = 40
            exact.traps[Inexact] = True
            qty = base / place.factor
        if qty != qty.quantize(Decimal("0.000001")):
            raise InvalidOperation
    except (Inexact, InvalidOperation):
        raise ConflictError(
            f"{where}: {plain(base)} of the base unit is no exact quantity of {place.uom}, "
            f"the unit {place.location} keeps it in; give another quantity or location"
        ) from None
    return plain(qty)


@dataclass(slots=True)
class _Plan:
    """What one shipment takes, as movements and lines, with what it took so far (so two
    lines of one shipment do not count the same reservation or balance twice)."""

    so: sales.SalesOrder
    held: dict[tuple[int, str], Decimal]
    taken: dict[tuple[str, str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    moves: list[Movement] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Want:
    """One lot of one SO line to take into a shipment, as the request asked."""

    line: sales.SoLine
    reservation: sales.Reservation
    given: ShipmentLineInput
    where: str


def _take_lot(connection: Connection, plan: _Plan, want: _Want, qty: Decimal) -> None:
    """Take ``qty`` (base unit) of one reserved lot from its locations into the plan."""
    line, reservation, given, where = want.line, want.reservation, want.given, want.where
    _base, factors = sales.unit_factors(connection, line.item_code)
    site = plan.so.site_id
    if given.location is not None:
        kind = connection.execute(
            select(locations.c.kind).where(
                locations.c.site_id == site, locations.c.code == given.location
            )
        ).scalar_one_or_none()
        if kind in UNSELLABLE_KINDS:
            raise InvalidError(f"{where}.location: {given.location!r} is a {kind} location")
    places = _places(
        connection, site, line.item_code, reservation.lot, factors=factors, only=given.location
    )
    for place in places:
        if qty <= 0:
            break
        key = (place.location, line.item_code, reservation.lot)
        room = place.base_qty - plan.taken[key]
        take = min(room, qty)
        if take <= 0:
            continue
        in_unit = _in_unit(take, place, where)
        plan.taken[key] += take
        qty -= take
        lot = None if reservation.lot == NO_LOT else reservation.lot
        plan.moves.append(
            Movement(
                kind=EventKind.ISSUE,
                item=line.item_code,
                location=place.location,
                qty=-in_unit,
                uom=place.uom,
                lot=lot,
                expiry=reservation.expiry,
                doc_type=SALES_ORDER,
                doc_id=plan.so.so_id,
                doc_line=line.line_no,
            )
        )
        plan.rows.append(
            {
                "line_no": len(plan.rows) + 1,
                "so_line": line.line_no,
                "item_code": line.item_code,
                "lot": lot,
                "expiry": reservation.expiry,
                "location": place.location,
                "qty": plain(take),
                "uom": line.base_uom,
            }
        )
    if qty > 0:
        at = f"at {given.location}" if given.location else "at sellable locations"
        raise ConflictError(
            f"{where}: lot {reservation.lot or '(none)'} of {line.item_code} has "
            f"{plain(qty)} {line.base_uom} too little on hand {at} of site {site}"
        )


def _plan_line(connection: Connection, plan: _Plan, given: ShipmentLineInput, where: str) -> None:
    line = next((each for each in plan.so.lines if each.line_no == given.so_line), None)
    if line is None:
        raise InvalidError(
            f"{where}.so_line: sales order {plan.so.so_id} has no line {given.so_line}"
        )
    _uom, need, _base_uom = base_quantity(connection, where, line.item_code, given.qty, given.uom)
    reserved = [r for r in line.reservations if given.lot is None or r.lot == given.lot]
    free = sum((plan.held[(line.line_no, r.lot)] for r in reserved), _ZERO)
    if free < need:
        lot = f" of lot {given.lot}" if given.lot is not None else ""
        raise ConflictError(
            f"{where}: {plan.so.so_id} line {line.line_no} has {plain(free)} {line.base_uom}"
            f"{lot} reserved and not yet shipped; {plain(need)} cannot be shipped (reserve first)"
        )
    for reservation in reserved:
        key = (line.line_no, reservation.lot)
        take = min(plan.held[key], need)
        if take <= 0:
            continue
        plan.held[key] -= take
        need -= take
        _take_lot(connection, plan, _Want(line, reservation, given, where), take)


def create_shipment(
    connection: Connection,
    *,
    so_id: str,
    tracking_no: str | None,
    note: str,
    lines: Sequence[ShipmentLineInput],
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    projections: Projections | None,
    claim: IdempotencyClaim | None = None,
) -> Shipment:
    """Ship reserved stock of a confirmed order, booked at once. ``IdempotentReplay`` on
    a retry."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidError(f"lines: 1 to {MAX_LINES} lines")
    with document_write(connection, action="shipment.create", audit=audit, claim=claim) as written:
        now = written.now
        site = connection.execute(
            select(sales_orders.c.site_id).where(sales_orders.c.so_id == so_id)
        ).scalar_one_or_none()
        if site is None or (visible is not None and site not in visible):
            raise UnknownDocumentError("sales order", so_id)
        central_events.lock_site(connection, site, now=now)
        so = locked_document(connection, sales.read_so, "sales order", so_id, visible)
        if so.status is not SoStatus.CONFIRMED:
            raise DocumentStateError("sales order", so_id, so.status, "a shipment", "confirmed")
        plan = _Plan(
            so=so,
            held={(line.line_no, r.lot): r.qty for line in so.lines for r in line.reservations},
        )
        for index, given in enumerate(lines):
            _plan_line(connection, plan, given, f"lines[{index}]")
        shipment_id = new_document_id(
            connection, sequence="#shipment", prefix="SH", column=shipments.c.shipment_id
        )
        connection.execute(
            insert(shipments).values(
                shipment_id=shipment_id,
                so_id=so_id,
                site_id=so.site_id,
                customer_code=so.customer,
                tracking_no=tracking_no,
                note=note,
                created_by=actor,
                created_at=now,
                version=1,
                updated_at=now,
            )
        )
        connection.execute(
            insert(shipment_lines), [{"shipment_id": shipment_id, **row} for row in plan.rows]
        )
        central_events.book(
            connection,
            site_id=so.site_id,
            movements=plan.moves,
            actor=actor,
            ref=shipment_id,
            now=now,
            projections=projections,
        )
        written.doc_id, written.site_id = shipment_id, so.site_id
        written.after = {
            "so_id": so_id,
            "tracking_no": tracking_no,
            "lines": auditable_rows(plan.rows),
        }
    return get_shipment(connection, shipment_id)


def set_tracking(connection: Connection, command: DocCommand, tracking_no: str) -> Shipment:
    """Record (or correct) the carrier's tracking number of a shipment."""
    with document_write(
        connection, action="shipment.tracking", audit=command.audit, claim=command.claim
    ) as written:
        found = locked_document(
            connection,
            _read_shipment,
            "shipment",
            command.doc_id,
            command.visible,
            if_match=command.if_match,
        )
        connection.execute(
            update(shipments)
            .where(shipments.c.shipment_id == found.shipment_id)
            .values(tracking_no=tracking_no, version=found.version + 1, updated_at=written.now)
        )
        written.doc_id, written.site_id = found.shipment_id, found.site_id
        written.before = {"tracking_no": found.tracking_no, "version": found.version}
        written.after = {"tracking_no": tracking_no, "version": found.version + 1}
    return get_shipment(connection, command.doc_id)


# --- the delivery note -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryNote:
    """A shipment with the names a person reads on paper (送货单)."""

    shipment: Shipment
    customer_name: str
    site_name: str
    item_names: dict[str, str]


def delivery_note(
    connection: Connection, shipment_id: str, *, visible: frozenset[str] | None
) -> DeliveryNote:
    with read_snapshot(connection):
        found = fetch_document(connection, _read_shipment, "shipment", shipment_id, visible)
        customer = connection.execute(
            select(partners.c.name).where(partners.c.code == found.customer)
        ).scalar_one_or_none()
        site = connection.execute(
            select(site_table.c.name).where(site_table.c.site_id == found.site_id)
        ).scalar_one_or_none()
        names = dict(
            connection.execute(
                select(items.c.item_code, items.c.name).where(
                    items.c.item_code.in_({line.item_code for line in found.lines})
                )
            ).all()
        )
    return DeliveryNote(
        shipment=found,
        customer_name=customer or found.customer,
        site_name=site or found.site_id,
        item_names=names,
    )
