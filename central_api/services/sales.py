"""Sales (销售): price lists (价目表) and sales orders (销售订单) with available-to-promise,
a credit check and FEFO lot reservation.

A sales order is a state machine like a purchase order, built on the document frame of
:mod:`central_api.services.documents` (version check, idempotency, audit):
``draft → confirmed → closed``, or ``cancelled`` from draft or confirmed.

Confirming runs in one write transaction that

1. locks the order, then the customer's partner row (so two confirms for one customer
   check its credit one after the other), then, on PostgreSQL, one transaction-scoped
   advisory lock per (site, item) of the order in sorted order (so two confirms racing
   for the last units of an item take turns; READ COMMITTED lets the second see the
   first's reservations once it holds the lock; SQLite's write transaction already
   holds the whole database);
2. refuses (409) an order that would take the customer's open exposure over its credit
   limit: the amounts, tax included, of its *confirmed* orders (receivables do not exist
   yet: a confirmed order not yet closed stands for what the customer will owe);
3. reserves each line lot by lot, first expiry first (FEFO), from what is available to
   promise: sellable on hand (locations of kind quarantine, damaged or in transit are
   not sellable) less what other orders reserve; never a lot that is expired or expires
   before today + the minimum remaining shelf life (the order's or the item's, the
   larger). What cannot be reserved stays on the line as its backorder; ``reserve``
   tries again later.

Reservations are rows per (order line, lot), so ATP is a query and a shipment event that
names an order line can consume its rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)

from central_api.core.db import write_transaction
from central_api.errors import ConflictError, InvalidError
from central_api.models.base import MicroUnits
from central_api.models.items import items
from central_api.models.master import item_units, locations, partners
from central_api.models.sales import (
    credit_notes,
    price_list_lines,
    price_lists,
    sales_invoices,
    sales_order_lines,
    sales_orders,
    sales_reservations,
    shipment_lines,
    shipments,
)
from central_api.models.stock import stock_balances
from central_api.services.audit import AuditContext, record
from central_api.services.central_events import lot_expiries
from central_api.services.documents import (
    MAX_LINES,
    MAX_PAGE,
    CommandGuard,
    DocumentStateError,
    UnknownDocumentError,
    base_quantity,
    check_limit,
    check_site,
    check_version,
    document_write,
    fetch_document,
    locked_document,
    moved,
    new_document_id,
    now_utc,
    plain,
    read_page,
    site_conditions,
    utc,
)
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from jxc.contract import MAX_ABS_AMOUNT
from jxc.feed import ChangeOp, FeedEntity, PickLineData, PickListData, PickLotData

MAX_SHELF_DAYS = 36500
UNSELLABLE_KINDS = ("quarantine", "damaged", "in_transit")
"""Location kinds whose stock is on hand but cannot be promised to a customer."""
_ZERO = Decimal(0)
_CENT = Decimal("0.01")


class SoStatus(StrEnum):
    DRAFT = "draft"
    CONFIRMED = "confirmed"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class CreditLimitError(ConflictError):
    """Confirming would take the customer over its credit limit."""


# --- price lists -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceLineInput:
    item_code: str
    price: Decimal
    uom: str | None = None
    valid_from: date | None = None
    valid_to: date | None = None


@dataclass(frozen=True, slots=True)
class PriceLine:
    line_no: int
    item_code: str
    uom: str
    price: Decimal
    valid_from: date | None
    valid_to: date | None


@dataclass(frozen=True, slots=True)
class PriceList:
    code: str
    name: str
    version: int
    updated_at: datetime
    lines: list[PriceLine] = field(default_factory=list)


def _read_price_list(connection: Connection, code: str, *, lock: bool = False) -> PriceList | None:
    query = select(price_lists).where(price_lists.c.code == code)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    if row is None:
        return None
    lines = connection.execute(
        select(price_list_lines)
        .where(price_list_lines.c.code == code)
        .order_by(price_list_lines.c.line_no)
    ).all()
    return PriceList(
        code=row.code,
        name=row.name,
        version=row.version,
        updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        lines=[
            PriceLine(
                line_no=line.line_no,
                item_code=line.item_code,
                uom=line.uom,
                price=line.price,
                valid_from=line.valid_from,
                valid_to=line.valid_to,
            )
            for line in lines
        ],
    )


def get_price_list(connection: Connection, code: str) -> PriceList:
    with read_snapshot(connection):
        found = _read_price_list(connection, code)
    if found is None:
        raise UnknownDocumentError("price list", code)
    return found


def list_price_lists(
    connection: Connection, *, after: str | None, limit: int
) -> tuple[list[PriceList], str | None]:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}")
    query = select(price_lists.c.code).order_by(price_lists.c.code).limit(limit + 1)
    if after is not None:
        query = query.where(price_lists.c.code > after)
    with read_snapshot(connection):
        codes = list(connection.execute(query).scalars())
        page = [_read_price_list(connection, code) for code in codes[:limit]]
    found = [price_list for price_list in page if price_list is not None]
    return found, (found[-1].code if len(codes) > limit and found else None)


def _auditable(value: Any) -> Any:
    """``value`` with its calendar days as ISO text: the audit log keeps JSON."""
    if isinstance(value, dict):
        return {key: _auditable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_auditable(item) for item in value]
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def _price_state(price_list: PriceList) -> dict[str, Any]:
    return _auditable(asdict(price_list))  # type: ignore[no-any-return]


def put_price_list(
    connection: Connection,
    *,
    code: str,
    name: str,
    lines: Sequence[PriceLineInput],
    if_match: str | None,
    audit: AuditContext,
) -> tuple[PriceList, bool]:
    """Create the price list, or replace its name and lines; ``(list, created)``."""
    now = now_utc()
    if len(lines) > MAX_LINES:
        raise InvalidError(f"lines: at most {MAX_LINES} lines")
    with write_transaction(connection):
        before = _read_price_list(connection, code, lock=True)
        if before is not None:
            check_version("price list", code, before.version, if_match)
        rows = []
        for index, line in enumerate(lines):
            where = f"lines[{index}]"
            if not _ZERO <= line.price < MAX_ABS_AMOUNT:
                raise InvalidError(f"{where}.price: must not be negative, got {line.price}")
            if line.valid_from and line.valid_to and line.valid_to < line.valid_from:
                raise InvalidError(f"{where}.valid_to: before valid_from")
            uom, _base, _base_uom = base_quantity(
                connection, where, line.item_code, Decimal(1), line.uom
            )
            rows.append(
                {
                    "code": code,
                    "line_no": index + 1,
                    "item_code": line.item_code,
                    "uom": uom,
                    "price": line.price,
                    "valid_from": line.valid_from,
                    "valid_to": line.valid_to,
                }
            )
        if before is None:
            connection.execute(
                insert(price_lists).values(code=code, name=name, version=1, updated_at=now)
            )
        else:
            connection.execute(delete(price_list_lines).where(price_list_lines.c.code == code))
            connection.execute(
                update(price_lists)
                .where(price_lists.c.code == code)
                .values(name=name, version=before.version + 1, updated_at=now)
            )
        if rows:
            connection.execute(insert(price_list_lines), rows)
        after = _read_price_list(connection, code)
        assert after is not None
        record(
            connection,
            audit,
            action="price_list.create" if before is None else "price_list.update",
            resource="price_list",
            resource_id=code,
            before=None if before is None else _price_state(before),
            after=_price_state(after),
            at=now,
        )
    return after, before is None


def list_price(
    connection: Connection, code: str, item_code: str, uom: str, on: date
) -> Decimal | None:
    """The price list's price of one unit on a day: the line valid then whose validity
    starts latest (a dated promotion wins over the open-ended list price)."""
    row = connection.execute(
        select(price_list_lines.c.price)
        .where(
            price_list_lines.c.code == code,
            price_list_lines.c.item_code == item_code,
            price_list_lines.c.uom == uom,
            (price_list_lines.c.valid_from.is_(None)) | (price_list_lines.c.valid_from <= on),
            (price_list_lines.c.valid_to.is_(None)) | (price_list_lines.c.valid_to >= on),
        )
        .order_by(
            price_list_lines.c.valid_from.is_(None),
            price_list_lines.c.valid_from.desc(),
            price_list_lines.c.line_no.desc(),
        )
        .limit(1)
    ).first()
    return None if row is None else row.price


# --- sales orders: shapes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SoLineInput:
    item_code: str
    qty: Decimal
    uom: str | None = None
    unit_price: Decimal | None = None
    tax_rate: Decimal | None = None
    requested_date: date | None = None


@dataclass(frozen=True, slots=True)
class Reservation:
    lot: str
    expiry: date | None
    qty: Decimal


def _gross(unit_price: Decimal, qty: Decimal, tax_rate: Decimal) -> Decimal:
    """A line's amount, tax included."""
    return plain(unit_price * qty * (1 + tax_rate))


@dataclass(frozen=True, slots=True)
class SoLine:
    line_no: int
    item_code: str
    qty: Decimal
    uom: str
    base_qty: Decimal
    base_uom: str
    unit_price: Decimal
    tax_rate: Decimal
    requested_date: date | None
    shipped_qty: Decimal
    reservations: list[Reservation]
    open_order: bool
    """Whether the order still wants the line's rest (confirmed): only then is a backorder."""

    @property
    def amount(self) -> Decimal:
        """Price × ordered quantity, before tax."""
        return plain(self.unit_price * self.qty)

    @property
    def gross_amount(self) -> Decimal:
        return _gross(self.unit_price, self.qty, self.tax_rate)

    @property
    def reserved_qty(self) -> Decimal:
        return plain(sum((r.qty for r in self.reservations), _ZERO))

    @property
    def backorder_qty(self) -> Decimal:
        """Wanted, neither reserved nor shipped, in the base unit (0 unless confirmed)."""
        if not self.open_order:
            return _ZERO
        return plain(max(self.base_qty - self.shipped_qty - self.reserved_qty, _ZERO))


@dataclass(frozen=True, slots=True)
class SalesOrder:
    so_id: str
    customer: str
    site_id: str
    status: SoStatus
    note: str
    min_remaining_days: int | None
    created_by: str
    created_at: datetime
    confirmed_by: str | None
    confirmed_at: datetime | None
    ended_at: datetime | None
    reason: str | None
    version: int
    updated_at: datetime
    lines: list[SoLine] = field(default_factory=list)
    channel: str | None = None
    """The online shop that placed it (``services.ecommerce``); None: made at central."""
    external_id: str | None = None
    """The shop's own order id, with ``channel``."""

    @property
    def amount(self) -> Decimal:
        return plain(sum((line.amount for line in self.lines), _ZERO))

    @property
    def gross_amount(self) -> Decimal:
        """Tax included: what the customer will owe, and what its credit must cover."""
        return plain(sum((line.gross_amount for line in self.lines), _ZERO))


@dataclass(frozen=True, slots=True)
class SoFilter:
    status: SoStatus | None = None
    customer: str | None = None
    site_id: str | None = None
    visible_sites: frozenset[str] | None = None
    channel: str | None = None
    """Only the orders this shop placed."""


# --- sales orders: reading ---------------------------------------------------------------


def _so_lines(
    connection: Connection, so_ids: Sequence[str], open_orders: set[str]
) -> dict[str, list[SoLine]]:
    found: dict[str, list[SoLine]] = {so_id: [] for so_id in so_ids}
    if not so_ids:
        return found
    held: dict[tuple[str, int], list[Reservation]] = {}
    for row in connection.execute(
        select(sales_reservations)
        .where(sales_reservations.c.so_id.in_(list(so_ids)))
        .order_by(
            sales_reservations.c.expiry.is_(None),
            sales_reservations.c.expiry,
            sales_reservations.c.lot,
        )
    ).all():
        held.setdefault((row.so_id, row.line_no), []).append(
            Reservation(lot=row.lot, expiry=row.expiry, qty=row.qty)
        )
    for row in connection.execute(
        select(sales_order_lines)
        .where(sales_order_lines.c.so_id.in_(list(so_ids)))
        .order_by(sales_order_lines.c.so_id, sales_order_lines.c.line_no)
    ).all():
        found[row.so_id].append(
            SoLine(
                line_no=row.line_no,
                item_code=row.item_code,
                qty=row.qty,
                uom=row.uom,
                base_qty=row.base_qty,
                base_uom=row.base_uom,
                unit_price=row.unit_price,
                tax_rate=row.tax_rate,
                requested_date=row.requested_date,
                shipped_qty=row.shipped_qty,
                reservations=held.get((row.so_id, row.line_no), []),
                open_order=row.so_id in open_orders,
            )
        )
    return found


def _so_from(row: Row[Any], lines: list[SoLine]) -> SalesOrder:
    return SalesOrder(
        so_id=row.so_id,
        customer=row.customer_code,
        site_id=row.site_id,
        status=SoStatus(row.status),
        note=row.note,
        min_remaining_days=row.min_remaining_days,
        created_by=row.created_by,
        created_at=utc(row.created_at),  # type: ignore[arg-type]
        confirmed_by=row.confirmed_by,
        confirmed_at=utc(row.confirmed_at),
        ended_at=utc(row.ended_at),
        reason=row.reason,
        version=row.version,
        updated_at=utc(row.updated_at),  # type: ignore[arg-type]
        lines=lines,
        channel=row.channel,
        external_id=row.external_id,
    )


def _orders_from(connection: Connection, rows: Sequence[Row[Any]]) -> list[SalesOrder]:
    open_orders = {row.so_id for row in rows if row.status == SoStatus.CONFIRMED.value}
    lines = _so_lines(connection, [row.so_id for row in rows], open_orders)
    return [_so_from(row, lines[row.so_id]) for row in rows]


def _read_so(connection: Connection, so_id: str, *, lock: bool = False) -> SalesOrder | None:
    query = select(sales_orders).where(sales_orders.c.so_id == so_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).one_or_none()
    return None if row is None else _orders_from(connection, [row])[0]


def get_sales_order(
    connection: Connection, so_id: str, *, visible: frozenset[str] | None = None
) -> SalesOrder:
    """The order; one of a site outside ``visible`` is answered as not existing."""
    return fetch_document(connection, _read_so, "sales order", so_id, visible)


def list_sales_orders(
    connection: Connection, *, chosen: SoFilter, after: str | None, limit: int
) -> tuple[list[SalesOrder], str | None]:
    check_limit(limit)
    table = sales_orders.c
    conditions = []
    if after is not None:
        conditions.append(table.so_id > after)
    if chosen.status is not None:
        conditions.append(table.status == chosen.status.value)
    if chosen.customer is not None:
        conditions.append(table.customer_code == chosen.customer)
    if chosen.channel is not None:
        conditions.append(table.channel == chosen.channel)
    conditions += site_conditions(table.site_id, chosen.site_id, chosen.visible_sites)
    return read_page(
        connection,
        sales_orders,
        table.so_id,
        conditions,
        limit=limit,
        build=lambda rows: _orders_from(connection, rows),
    )


def _state(so: SalesOrder) -> dict[str, Any]:
    """The order as the audit log keeps it (the log strips prices per reader). A shop's
    order keeps its channel and external id in every entry, so a webhook receiver hears
    which shop's order was confirmed or shipped; an order made at central has neither."""
    state = asdict(so)
    if so.channel is None:
        del state["channel"], state["external_id"]
    return _auditable(state)  # type: ignore[no-any-return]


# --- sales orders: writing -------------------------------------------------------------


def _check_customer(connection: Connection, code: str) -> str | None:
    """The customer's price list, after refusing a partner that cannot be sold to."""
    found = connection.execute(
        select(partners.c.is_customer, partners.c.active, partners.c.price_list).where(
            partners.c.code == code
        )
    ).one_or_none()
    if found is None:
        raise InvalidError(f"customer: partner {code!r} does not exist")
    if not found.is_customer:
        raise InvalidError(f"customer: partner {code!r} is not a customer")
    if not found.active:
        raise InvalidError(f"customer: customer {code!r} is inactive")
    return found.price_list  # type: ignore[no-any-return]


def _write_lines(
    connection: Connection,
    so_id: str,
    price_list: str | None,
    lines: Sequence[SoLineInput],
    today: date,
) -> None:
    if not lines:
        raise InvalidError("lines: a sales order needs at least one line")
    if len(lines) > MAX_LINES:
        raise InvalidError(f"lines: at most {MAX_LINES} lines")
    rows = []
    for index, line in enumerate(lines):
        where = f"lines[{index}]"
        uom, base_qty, base_uom = base_quantity(
            connection, where, line.item_code, line.qty, line.uom
        )
        price = line.unit_price
        if price is None:
            if price_list is None:
                raise InvalidError(
                    f"{where}.unit_price: give a price; the customer has no price list"
                )
            price = list_price(connection, price_list, line.item_code, uom, today)
            if price is None:
                raise InvalidError(
                    f"{where}.unit_price: price list {price_list} has no price of "
                    f"{line.item_code} per {uom} valid on {today}; give a price"
                )
        if not _ZERO <= price < MAX_ABS_AMOUNT:
            raise InvalidError(f"{where}.unit_price: must not be negative")
        tax = _ZERO if line.tax_rate is None else line.tax_rate
        if not _ZERO <= tax < 1:
            raise InvalidError(f"{where}.tax_rate: a fraction within 0..1 (0.13 for 13 %)")
        if abs(price * line.qty * (1 + tax)) >= MAX_ABS_AMOUNT:
            raise InvalidError(f"{where}: the line's amount is too large")
        rows.append(
            {
                "so_id": so_id,
                "line_no": index + 1,
                "item_code": line.item_code,
                "qty": line.qty,
                "uom": uom,
                "base_qty": base_qty,
                "base_uom": base_uom,
                "unit_price": price,
                "tax_rate": tax,
                "requested_date": line.requested_date,
                "shipped_qty": _ZERO,
            }
        )
    connection.execute(insert(sales_order_lines), rows)


def _check_days(days: int | None) -> None:
    if days is not None and not 0 <= days <= MAX_SHELF_DAYS:
        raise InvalidError(f"min_remaining_days: within 0..{MAX_SHELF_DAYS}")


def create_sales_order(
    connection: Connection,
    *,
    customer: str,
    site_id: str,
    note: str,
    min_remaining_days: int | None,
    lines: Sequence[SoLineInput],
    created_by: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
    today: date | None = None,
) -> SalesOrder:
    """A new draft order; a line without a price takes the customer's list price."""
    _check_days(min_remaining_days)
    with document_write(
        connection, action="sales_order.create", audit=audit, claim=claim
    ) as written:
        now = written.now
        check_site(connection, site_id, visible)
        found = _check_customer(connection, customer)
        so_id = insert_draft(
            connection,
            customer=customer,
            site_id=site_id,
            note=note,
            min_remaining_days=min_remaining_days,
            created_by=created_by,
            now=now,
        )
        _write_lines(connection, so_id, found, lines, today or now.date())
        so = _read_so(connection, so_id)
        assert so is not None
        written.doc_id, written.site_id, written.after = so_id, site_id, _state(so)
    return so


def insert_draft(
    connection: Connection,
    *,
    customer: str,
    site_id: str,
    note: str,
    min_remaining_days: int | None,
    created_by: str,
    now: datetime,
) -> str:
    """A new draft's header row under the next SO number, in the caller's transaction
    (a create here, or a shop's order in :mod:`services.ecommerce`); its id."""
    _check_days(min_remaining_days)
    so_id = new_document_id(
        connection, sequence="#sales_order", prefix="SO", column=sales_orders.c.so_id
    )
    connection.execute(
        insert(sales_orders).values(
            so_id=so_id,
            customer_code=customer,
            site_id=site_id,
            status=SoStatus.DRAFT.value,
            note=note,
            min_remaining_days=min_remaining_days,
            created_by=created_by,
            created_at=now,
            version=1,
            updated_at=now,
        )
    )
    return so_id


def _locked_so(
    connection: Connection, so_id: str, visible: frozenset[str] | None, if_match: str | None
) -> SalesOrder:
    return locked_document(connection, _read_so, "sales order", so_id, visible, if_match=if_match)


def update_sales_order(
    connection: Connection,
    *,
    so_id: str,
    customer: str,
    site_id: str,
    note: str,
    min_remaining_days: int | None,
    lines: Sequence[SoLineInput],
    visible: frozenset[str] | None,
    if_match: str | None,
    audit: AuditContext,
    today: date | None = None,
) -> SalesOrder:
    """Replace a draft's header and lines (only a draft may change)."""
    _check_days(min_remaining_days)
    with document_write(connection, action="sales_order.update", audit=audit) as written:
        now = written.now
        before = _locked_so(connection, so_id, visible, if_match)
        if before.status is not SoStatus.DRAFT:
            raise DocumentStateError("sales order", so_id, before.status, "a change", "draft")
        check_site(connection, site_id, visible)
        found = _check_customer(connection, customer)
        connection.execute(delete(sales_order_lines).where(sales_order_lines.c.so_id == so_id))
        connection.execute(
            update(sales_orders)
            .where(sales_orders.c.so_id == so_id)
            .values(
                customer_code=customer,
                site_id=site_id,
                note=note,
                min_remaining_days=min_remaining_days,
                version=before.version + 1,
                updated_at=now,
            )
        )
        _write_lines(connection, so_id, found, lines, today or now.date())
        after = _read_so(connection, so_id)
        assert after is not None
        written.doc_id, written.site_id = so_id, site_id
        written.before, written.after = _state(before), _state(after)
    return after


# --- available to promise --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LotAvailability:
    lot: str
    expiry: date | None
    on_hand: Decimal
    """Sellable on hand, in the item's base unit."""
    unsellable: Decimal
    """On hand in quarantine, damaged or in-transit locations."""
    reserved: Decimal

    @property
    def available(self) -> Decimal:
        return plain(max(self.on_hand - self.reserved, _ZERO))


def _factors(connection: Connection, item_code: str) -> tuple[str, dict[str, Decimal]]:
    return _units_of(connection, [item_code])[item_code]


_CHUNK = 500
"""Item codes per ``IN`` list: well under any driver's limit on bound parameters."""


def _chunks(codes: Collection[str]) -> Iterator[list[str]]:
    ordered = sorted(set(codes))
    for first in range(0, len(ordered), _CHUNK):
        yield ordered[first : first + _CHUNK]


def _one_of(column: ColumnElement[str], codes: list[str]) -> ColumnElement[bool]:
    """``column`` is one of ``codes``: a plain ``=`` for one (an ATP check of one item),
    which SQLAlchemy runs from its cache without expanding an ``IN`` list."""
    return column == codes[0] if len(codes) == 1 else column.in_(codes)


def _units_of(
    connection: Connection, item_codes: Collection[str]
) -> dict[str, tuple[str, dict[str, Decimal]]]:
    """Each item's base unit and every unit's factor to it (422 for an unknown item)."""
    found: dict[str, tuple[str, dict[str, Decimal]]] = {}
    for chunk in _chunks(item_codes):
        for code, base in connection.execute(
            select(items.c.item_code, items.c.uom).where(_one_of(items.c.item_code, chunk))
        ):
            found[code] = (str(base), {str(base): Decimal(1)})
        for code, uom, factor in connection.execute(
            select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
                _one_of(item_units.c.item_code, chunk)
            )
        ):
            if code in found:
                found[code][1][uom] = factor
    for code in sorted(item_codes):
        if code not in found:
            raise InvalidError(f"item: item {code!r} does not exist")
    return found


def availability(connection: Connection, site_id: str, item_code: str) -> list[LotAvailability]:
    """Per lot of one item at a site: see :func:`availabilities`."""
    return availabilities(connection, site_id, [item_code])[item_code]


def availabilities(
    connection: Connection, site_id: str, item_codes: Collection[str]
) -> dict[str, list[LotAvailability]]:
    """Per item, per lot at a site: sellable and unsellable on hand, reserved; by FEFO
    order. Four reads for all the items (units, balances, reservations, expiries), not
    four per item: a 100-line order is confirmed with these, so they must not grow with
    its lines (``bench/sales.py``).

    A balance held in a unit the item does not have (an edge's mistake) cannot be
    counted in the base unit, so it is not promised."""
    units = _units_of(connection, item_codes)
    sellable: dict[str, dict[str, Decimal]] = {code: {} for code in units}
    held_back: dict[str, dict[str, Decimal]] = {code: {} for code in units}
    reserved: dict[str, dict[str, Decimal]] = {code: {} for code in units}
    place = (locations.c.site_id == stock_balances.c.site_id) & (
        locations.c.code == stock_balances.c.location
    )
    # Rows are unpacked as tuples: a 100-line order reads thousands of them.
    for chunk in _chunks(item_codes):
        for item, lot, uom, qty, kind in connection.execute(
            select(
                stock_balances.c.item,
                stock_balances.c.lot,
                stock_balances.c.uom,
                stock_balances.c.qty,
                locations.c.kind,
            )
            .select_from(stock_balances.outerjoin(locations, place))
            .where(stock_balances.c.site_id == site_id, _one_of(stock_balances.c.item, chunk))
        ):
            factor = units[item][1].get(uom)
            if factor is None:
                continue
            target = (held_back if kind in UNSELLABLE_KINDS else sellable)[item]
            target[lot] = target.get(lot, _ZERO) + qty * factor
        for item, lot, total in connection.execute(
            select(
                sales_reservations.c.item_code,
                sales_reservations.c.lot,
                func.sum(sales_reservations.c.qty).label("total"),
            )
            .where(
                sales_reservations.c.site_id == site_id,
                _one_of(sales_reservations.c.item_code, chunk),
            )
            .group_by(sales_reservations.c.item_code, sales_reservations.c.lot)
        ):
            reserved[item][lot] = Decimal(total)
    lots = {
        code: sorted(set(sellable[code]) | set(held_back[code]) | set(reserved[code]))
        for code in units
    }
    expiries = lot_expiries(connection, ((code, lot) for code in lots for lot in lots[code]))
    return {
        code: sorted(
            (
                LotAvailability(
                    lot=lot,
                    expiry=expiries.get((code, lot)),
                    on_hand=plain(max(sellable[code].get(lot, _ZERO), _ZERO)),
                    unsellable=plain(max(held_back[code].get(lot, _ZERO), _ZERO)),
                    reserved=plain(reserved[code].get(lot, _ZERO)),
                )
                for lot in lots[code]
            ),
            key=fefo_key,
        )
        for code in lots
    }


def fefo_key(lot: LotAvailability) -> tuple[bool, date, str]:
    """First expiry first; lots without an expiry after every dated one, then by name."""
    return (lot.expiry is None, lot.expiry or date.max, lot.lot)


def acceptable(expiry: date | None, today: date, min_days: int) -> bool:
    """A lot may be promised when it has no expiry, or still has ``min_days`` (at least
    one: a lot expiring today is not sold) left after today."""
    return expiry is None or expiry >= today + timedelta(days=max(min_days, 1))


def plan_fefo(
    lots: Sequence[LotAvailability], need: Decimal, today: date, min_days: int
) -> list[tuple[LotAvailability, Decimal]]:
    """What to reserve of ``need``: acceptable lots, earliest expiry first, each up to
    what it has available. Pure, so it is tested as a property."""
    taken: list[tuple[LotAvailability, Decimal]] = []
    for lot in sorted(lots, key=fefo_key):
        if need <= 0:
            break
        if not acceptable(lot.expiry, today, min_days):
            continue
        qty = min(lot.available, need)
        if qty > 0:
            taken.append((lot, qty))
            need -= qty
    return taken


def item_unit(connection: Connection, item_code: str) -> tuple[str, dict[str, Decimal]]:
    """The item's base unit and every unit's factor to it (422 for an unknown item)."""
    with read_snapshot(connection):
        return _factors(connection, item_code)


def get_availability(connection: Connection, site_id: str, item_code: str) -> list[LotAvailability]:
    with read_snapshot(connection):
        return availability(connection, site_id, item_code)


def _advisory_key(site_id: str, item_code: str) -> int:
    digest = hashlib.blake2b(f"atp {site_id} {item_code}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_items(connection: Connection, site_id: str, item_codes: set[str]) -> None:
    """Serialize reservation of these items at the site (PostgreSQL); sorted, so two
    orders naming the same items cannot wait for each other in a circle."""
    if connection.dialect.name != "postgresql" or not item_codes:
        return
    # One executemany: the driver sends the statements in this order in one round trip
    # (psycopg's pipeline), and the server takes the locks one after another, in order.
    keys = sorted(_advisory_key(site_id, code) for code in item_codes)
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), [{"key": key} for key in keys])


def _reserve(connection: Connection, so: SalesOrder, today: date) -> None:
    """Top up every line's reservations FEFO from what is available now.

    The order's items are read once (:func:`availabilities`), and what a line takes is
    counted as reserved before the next line is planned, so two lines of one item never
    share a unit. The rows are written together at the end (one ``executemany`` each for
    new rows and top-ups)."""
    codes = {line.item_code for line in so.lines}
    _lock_items(connection, so.site_id, codes)
    shelf = {
        row.item_code: row.min_remaining_days or 0
        for row in connection.execute(
            select(items.c.item_code, items.c.min_remaining_days).where(
                items.c.item_code.in_(codes)
            )
        ).all()
    }
    wanted = [
        (line, need)
        for line in so.lines
        if (need := line.base_qty - line.shipped_qty - line.reserved_qty) > 0
    ]
    if not wanted:
        return
    lots_of = availabilities(connection, so.site_id, {line.item_code for line, _ in wanted})
    added: list[dict[str, Any]] = []
    topped: list[dict[str, Any]] = []
    for line, need in wanted:
        min_days = max(shelf.get(line.item_code, 0), so.min_remaining_days or 0)
        lots = lots_of[line.item_code]
        own = {r.lot for r in line.reservations}
        taken: dict[str, Decimal] = {}
        for lot, qty in plan_fefo(lots, need, today, min_days):
            taken[lot.lot] = qty
            if lot.lot in own:
                topped.append(
                    {"b_so": so.so_id, "b_line": line.line_no, "b_lot": lot.lot, "b_more": qty}
                )
            else:
                added.append(
                    {
                        "so_id": so.so_id,
                        "line_no": line.line_no,
                        "site_id": so.site_id,
                        "item_code": line.item_code,
                        "lot": lot.lot,
                        "expiry": lot.expiry,
                        "qty": qty,
                    }
                )
        if taken:
            lots_of[line.item_code] = [
                replace(lot, reserved=plain(lot.reserved + taken[lot.lot]))
                if lot.lot in taken
                else lot
                for lot in lots
            ]
    if topped:
        held = sales_reservations.c
        connection.execute(
            update(sales_reservations)
            .where(
                held.so_id == bindparam("b_so"),
                held.line_no == bindparam("b_line"),
                held.lot == bindparam("b_lot"),
            )
            .values(qty=held.qty + bindparam("b_more", type_=MicroUnits)),
            topped,
        )
    if added:
        connection.execute(insert(sales_reservations), added)


def _release(connection: Connection, so_id: str) -> None:
    connection.execute(delete(sales_reservations).where(sales_reservations.c.so_id == so_id))


def _unshipped_share(base_qty: Decimal, shipped_qty: Decimal) -> Decimal:
    """The part of a line not yet shipped, as a fraction of it."""
    return max(base_qty - shipped_qty, _ZERO) / base_qty


def _uninvoiced_shipments(connection: Connection, customer: str) -> Decimal:
    """What the customer's shipments not yet invoiced are worth, tax included."""
    invoiced = select(sales_invoices.c.shipment_id)
    rows = connection.execute(
        select(
            shipment_lines.c.qty,
            sales_order_lines.c.unit_price,
            sales_order_lines.c.qty.label("ordered"),
            sales_order_lines.c.base_qty,
            sales_order_lines.c.tax_rate,
        )
        .join(shipments, shipments.c.shipment_id == shipment_lines.c.shipment_id)
        .join(
            sales_order_lines,
            (sales_order_lines.c.so_id == shipments.c.so_id)
            & (sales_order_lines.c.line_no == shipment_lines.c.so_line),
        )
        .where(shipments.c.customer_code == customer, shipments.c.shipment_id.not_in(invoiced))
    ).all()
    return sum(
        (
            row.qty / row.base_qty * row.ordered * row.unit_price * (1 + row.tax_rate)
            for row in rows
        ),
        _ZERO,
    )


def credit_exposure(connection: Connection, customer: str, *, besides: str = "") -> Decimal:
    """What the customer owes or will owe: open receivables (invoices less payments),
    shipments not yet invoiced, and what confirmed orders (other than ``besides``) have
    still to ship, all tax included."""
    credited = (
        select(func.coalesce(func.sum(credit_notes.c.gross_amount), 0))
        .where(credit_notes.c.invoice_id == sales_invoices.c.invoice_id)
        .scalar_subquery()
    )
    receivable = sum(
        (
            row.gross_amount - row.paid_amount - Decimal(row.credited or 0)
            for row in connection.execute(
                select(
                    sales_invoices.c.gross_amount,
                    sales_invoices.c.paid_amount,
                    credited.label("credited"),
                ).where(
                    sales_invoices.c.customer_code == customer, sales_invoices.c.status == "open"
                )
            ).all()
        ),
        _ZERO,
    )
    # The lines' money and progress only: neither the orders' reservations nor their
    # headers count, and a customer may have many open orders (bench/sales.py).
    line = sales_order_lines.c
    to_ship = sum(
        (
            _gross(row.unit_price, row.qty, row.tax_rate)
            * _unshipped_share(row.base_qty, row.shipped_qty)
            for row in connection.execute(
                select(line.unit_price, line.qty, line.tax_rate, line.base_qty, line.shipped_qty)
                .join(sales_orders, sales_orders.c.so_id == line.so_id)
                .where(
                    sales_orders.c.customer_code == customer,
                    sales_orders.c.status == SoStatus.CONFIRMED.value,
                    sales_orders.c.so_id != besides,
                )
            )
        ),
        _ZERO,
    )
    return receivable + _uninvoiced_shipments(connection, customer) + to_ship


def _check_credit(connection: Connection, so: SalesOrder) -> None:
    """Refuse when the customer's exposure (:func:`credit_exposure`) plus this order
    passes its credit limit. The partner row is locked, so confirms for one customer
    check one after another."""
    limit = connection.execute(
        select(partners.c.credit_limit).where(partners.c.code == so.customer).with_for_update()
    ).scalar_one_or_none()
    if limit is None:
        return
    exposure = plain(credit_exposure(connection, so.customer, besides=so.so_id).quantize(_CENT))
    if exposure + so.gross_amount > limit:
        raise CreditLimitError(
            f"customer {so.customer} would be over its credit limit: limit {plain(limit)}, "
            f"open receivables and orders {exposure}, this order {so.gross_amount} (tax "
            "included); collect payments, cancel or close open orders, or raise the limit"
        )


# --- commands -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SoCommand(CommandGuard):
    """A command on the sales order ``so_id``; ``today`` stands in for the date in tests."""

    so_id: str
    today: date | None = None


@dataclass(slots=True)
class _Step:
    """What a command's body is given (the order as it was, locked; the time) and fills in
    (``values``: the header's new columns); ``after``: the order as the command left it,
    read once in its transaction and answered without reading it again."""

    before: SalesOrder
    now: datetime
    values: dict[str, Any] = field(default_factory=dict)
    after: SalesOrder | None = None

    def done(self) -> SalesOrder:
        assert self.after is not None
        return self.after


@contextmanager
def _so_command(connection: Connection, command: SoCommand, verb: str) -> Iterator[_Step]:
    """The frame every command shares (:func:`documents.document_write`): after the body,
    the new state and version; the audit entry names the reservations."""
    with (
        document_write(
            connection, action=f"sales_order.{verb}", audit=command.audit, claim=command.claim
        ) as written,
        # The feed's lock first (before the order's row), as every feed writer takes it.
        feed_writer(connection, changed_at=written.now) as writer,
    ):
        before = _locked_so(connection, command.so_id, command.visible, command.if_match)
        step = _Step(before, written.now)
        yield step
        connection.execute(
            update(sales_orders)
            .where(sales_orders.c.so_id == command.so_id)
            .values(**step.values, version=before.version + 1, updated_at=written.now)
        )
        after = step.after = _read_so(connection, command.so_id)
        assert after is not None
        _publish_pick_list(writer, before, after)
        written.doc_id, written.site_id = command.so_id, after.site_id
        written.before, written.after = moved(before, after, command.reason)
        written.after["reserved"] = {
            str(line.line_no): [{"lot": r.lot, "qty": str(r.qty)} for r in line.reservations]
            for line in after.lines
        }


def _pick_list_data(so: SalesOrder) -> PickListData:
    """A confirmed order as its site's picking station sees it: per line what was ordered
    and shipped and the reserved lots, earliest expiry first. No price, no amount."""
    return PickListData(
        so_id=so.so_id,
        customer=so.customer,
        so_version=so.version,
        min_remaining_days=so.min_remaining_days,
        lines=[
            PickLineData(
                so_line=line.line_no,
                item_code=line.item_code,
                uom=line.base_uom,
                qty=plain(line.base_qty),
                shipped=plain(line.shipped_qty),
                lots=[
                    PickLotData(lot=held.lot, expiry=held.expiry, qty=plain(held.qty))
                    for held in line.reservations
                ],
            )
            for line in so.lines
            if line.reservations
        ],
    )


def _publish_pick_list(writer: FeedWriter, before: SalesOrder, after: SalesOrder) -> None:
    """A confirmed order's reservations go to its site as a pick list (``pick_list``,
    keyed by the order's id); once the order is cancelled or closed, its tombstone.

    Published by the order's commands only. A shipment booked by ingest (the edge's own
    picks) moves the reservations without a new version of the pick list: ledger pushes
    never take the feed's lock, and the edge knows what it picked itself.
    """
    if after.status is SoStatus.CONFIRMED:
        writer.append(
            entity=FeedEntity.PICK_LIST,
            key=after.so_id,
            op=ChangeOp.UPSERT,
            data=_pick_list_data(after).model_dump(mode="json"),
            site_id=after.site_id,
        )
    elif before.status is SoStatus.CONFIRMED:
        writer.append(
            entity=FeedEntity.PICK_LIST,
            key=after.so_id,
            op=ChangeOp.DELETE,
            data=None,
            site_id=after.site_id,
        )


def confirm_sales_order(connection: Connection, command: SoCommand) -> SalesOrder:
    """draft → confirmed: credit check, then FEFO reservation; the rest is backordered."""
    with _so_command(connection, command, "confirm") as step:
        so, now = step.before, step.now
        if so.status is not SoStatus.DRAFT:
            raise DocumentStateError("sales order", so.so_id, so.status, "confirm", "draft")
        _check_credit(connection, so)
        _reserve(connection, so, command.today or now.date())
        step.values.update(
            status=SoStatus.CONFIRMED.value, confirmed_by=command.actor, confirmed_at=now
        )
    return step.done()


def reserve_sales_order(connection: Connection, command: SoCommand) -> SalesOrder:
    """confirmed: try again to reserve the backorders from what is available now."""
    with _so_command(connection, command, "reserve") as step:
        so, now = step.before, step.now
        if so.status is not SoStatus.CONFIRMED:
            raise DocumentStateError("sales order", so.so_id, so.status, "reserve", "confirmed")
        _reserve(connection, so, command.today or now.date())
    return step.done()


def cancel_sales_order(connection: Connection, command: SoCommand) -> SalesOrder:
    """draft or confirmed → cancelled, releasing its reservations; not once shipped."""
    with _so_command(connection, command, "cancel") as step:
        so, now = step.before, step.now
        if so.status not in (SoStatus.DRAFT, SoStatus.CONFIRMED):
            raise DocumentStateError(
                "sales order", so.so_id, so.status, "cancel", "draft or confirmed"
            )
        if any(line.shipped_qty for line in so.lines):
            raise ConflictError(f"sales order {so.so_id} has shipments: close it instead")
        _release(connection, so.so_id)
        step.values.update(status=SoStatus.CANCELLED.value, ended_at=now, reason=command.reason)
    return step.done()


def close_sales_order(connection: Connection, command: SoCommand) -> SalesOrder:
    """confirmed → closed: nothing more will be shipped; what is still reserved is
    released and the backorders end."""
    with _so_command(connection, command, "close") as step:
        so, now = step.before, step.now
        if so.status is not SoStatus.CONFIRMED:
            raise DocumentStateError("sales order", so.so_id, so.status, "close", "confirmed")
        _release(connection, so.so_id)
        step.values.update(status=SoStatus.CLOSED.value, ended_at=now, reason=command.reason)
    return step.done()


# --- for the documents that follow an order (services.shipping) -----------------------------


def read_so(connection: Connection, so_id: str, *, lock: bool = False) -> SalesOrder | None:
    """The order with its lines and reservations (locked ``FOR UPDATE`` with ``lock``)."""
    return _read_so(connection, so_id, lock=lock)


def unit_factors(connection: Connection, item_code: str) -> tuple[str, dict[str, Decimal]]:
    """The item's base unit and every unit's factor to it, in the caller's transaction."""
    return _factors(connection, item_code)


# --- for orders placed by an online shop (services.ecommerce) ------------------------------


def check_customer(connection: Connection, code: str) -> str | None:
    """Refuse (422) a partner that cannot be sold to; else its price list."""
    return _check_customer(connection, code)


def write_lines(
    connection: Connection,
    so_id: str,
    price_list: str | None,
    lines: Sequence[SoLineInput],
    today: date,
) -> None:
    """A new order's lines, checked as a create checks them, in the caller's transaction."""
    _write_lines(connection, so_id, price_list, lines, today)


def audit_state(so: SalesOrder) -> dict[str, Any]:
    """The order as its audit entries keep it."""
    return _state(so)
