"""The item master: items, their units, barcodes and per-site levels, each write mirrored
into the change feed.

Every function that writes does so in one transaction that also appends the changes to
``change_feed`` (:func:`central_api.services.feed.feed_writer`), so a site's cache can
never miss a write or see one that was rolled back. Writes that change nothing (the same
PUT twice) append nothing, so an edge is not sent the same state again.

Rules:

* Items are deleted only while nothing has moved them; once stock has moved (a balance
  exists at any site) :func:`remove_item` archives instead: the item stays, inactive and
  out of default lists, since the ledgers reference it. ``restore_item`` brings it back.
  ``deactivate_item`` is the lighter, temporary switch.
* An item's code is given by hand or made by its category's coding rule (编码规则):
  the category's prefix and the next number of that prefix's sequence, zero-padded. A
  hand-given code of a category with a pattern must match it in full.
* An item has a base unit (``uom``) and other units, each ``factor`` base units; a unit
  may be given relative to another (箱 = 12 盒 where 盒 = 10 片 makes 箱 = 120 片), and
  the product must be exact to six places.
* A barcode identifies one item, with the pack unit one scan means; its ``qty_per`` is
  that unit's factor. EAN-8/UPC-A/EAN-13/GTIN-14 check digits are verified
  (:mod:`central_api.services.barcodes`). Assigning a code that another item holds is
  refused (:class:`~central_api.errors.BarcodeTakenError`); moving it takes a delete first.
* Removing a barcode, unit or level writes a tombstone, so an edge that was offline still
  drops it.
* Items, barcodes and units are for every site (``site_id`` NULL in the feed); an item's
  levels at a site go to that site only.
* Every write is recorded in the audit log (:func:`central_api.services.audit.record`)
  in its own transaction, with the item's state before and after (its barcodes as
  ``{barcode: qty_per}``), whether or not it changed anything: the log says who asked.

Within one write the changes are appended item first, then units, then barcode
tombstones, then barcode upserts, each group in key order. A page boundary may fall
between them; an edge applying pages in order still never holds a barcode of an item it
does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Connection,
    DefaultClause,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql import Select

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.errors import (
    BarcodeTakenError,
    ConflictError,
    InvalidError,
    NotFoundError,
    UnknownBarcodeError,
    UnknownItemError,
)
from central_api.models import stock_balances
from central_api.models.base import from_micro_units, to_micro_units
from central_api.models.items import item_barcodes, items
from central_api.models.master import categories, code_sequences, item_site_levels, item_units
from central_api.models.master import sites as site_table
from central_api.services import idempotency
from central_api.services.audit import AuditContext, record
from central_api.services.barcodes import barcode_kind, gtin_spellings
from central_api.services.categories import mask_matches
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from jxc.contract import MAX_ABS_AMOUNT
from jxc.feed import (
    BarcodeData,
    ChangeOp,
    FeedEntity,
    ItemData,
    ItemSiteData,
    ItemUnitData,
)

MAX_ITEMS_PAGE = 1000
VALUATION_METHODS = ("moving_average", "fifo")
FINANCIAL_FIELDS = ("cost", "price", "purchase_price")
"""Central-only amounts: never in the change feed, absent for roles without the group."""
_BASE_FEED_FIELDS = ("item_code", "name", "uom", "active")
_ITEM_DEFAULTS = ItemData(item_code="-")


@dataclass(slots=True)
class ItemBarcode:
    """One barcode of an item as central stores it."""

    barcode: str
    qty_per: Decimal
    version: int
    """The feed version of this barcode's last change."""
    updated_at: datetime
    uom: str | None = None
    """The pack unit one scan means; None: the base unit."""
    kind: str = "internal"


@dataclass(slots=True)
class ItemUnit:
    """A unit of the item other than its base unit: ``factor`` base units make one."""

    uom: str
    factor: Decimal
    version: int
    updated_at: datetime


@dataclass(slots=True)
class Item:
    """An item with its units and barcodes (in key order), as central stores it."""

    item_code: str
    name: str
    uom: str
    active: bool
    version: int
    """The feed version of the item's own last change."""
    updated_at: datetime
    barcodes: list[ItemBarcode] = field(default_factory=list)
    cost: Decimal | None = None
    """Financial, never in the change feed."""
    price: Decimal | None = None
    purchase_price: Decimal | None = None
    name_en: str = ""
    category: str | None = None
    lot_tracked: bool = False
    expiry_tracked: bool = False
    serial_tracked: bool = False
    shelf_life_days: int | None = None
    min_remaining_days: int | None = None
    unit_weight: Decimal | None = None
    weight_tolerance: Decimal | None = None
    valuation: str = "moving_average"
    archived: bool = False
    units: list[ItemUnit] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of the item master, in item_code order."""

    items: list[Item]
    next_after: str | None
    """The item code to continue after; None when this page is the last."""


@dataclass(frozen=True, slots=True)
class BarcodeSpec:
    """A barcode as a writer gives it: the pack unit, or a bare count (older clients)."""

    barcode: str
    uom: str | None = None
    qty_per: Decimal | None = None
    kind: str | None = None


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """A unit as a writer gives it: ``factor`` of ``of`` (another unit), or of the base."""

    uom: str
    factor: Decimal
    of: str | None = None


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """What a list of items is narrowed to; every field given must hold."""

    q: str | None = None
    """A code prefix, a part of either name, or a whole barcode (any GTIN spelling)."""
    barcode: str | None = None
    category: str | None = None
    """The category or any category below it."""
    active: bool | None = None
    archived: bool | None = False
    """False (default): archived items are left out; None: both."""


@dataclass(frozen=True, slots=True)
class RemoveOutcome:
    item_code: str
    outcome: str
    """``deleted`` (nothing referenced it) or ``archived`` (stock has moved)."""
    item: Item | None


@dataclass(slots=True)
class SiteLevels:
    site_id: str
    item_code: str
    safety_stock: Decimal
    reorder_point: Decimal
    reorder_qty: Decimal
    version: int
    updated_at: datetime


class ItemExistsError(ConflictError):
    def __init__(self, item_code: str) -> None:
        super().__init__(
            f"item {item_code!r} exists already; change it with PUT /api/v1/items/{item_code}"
        )


class ItemArchivedError(ConflictError):
    def __init__(self, item_code: str) -> None:
        super().__init__(
            f"item {item_code!r} is archived: restore it (POST .../restore) before making it active"
        )


class UnknownSiteRecordError(NotFoundError):
    def __init__(self, site_id: str) -> None:
        super().__init__(
            f"site {site_id!r} is not in the site master; add it with PUT /api/v1/sites/{site_id}"
        )


class UnknownLevelsError(NotFoundError):
    def __init__(self, site_id: str, item_code: str) -> None:
        super().__init__(f"item {item_code!r} has no stock levels at site {site_id!r}")


# --- writing items --------------------------------------------------------------------


def upsert_item(
    *,
    connection: Connection,
    item: ItemData,
    barcodes: Sequence[BarcodeData | BarcodeSpec] | None,
    audit: AuditContext,
    now: datetime | None = None,
    cost: Decimal | None = None,
    price: Decimal | None = None,
    purchase_price: Decimal | None = None,
    units: Sequence[UnitSpec] | None = None,
    valuation: str | None = None,
) -> Item:
    """Create or update ``item``; ``barcodes`` and ``units``, when given, become its sets.

    Barcodes (units) the item has and the given set lacks are deleted (tombstones in the
    feed); ``None`` leaves them as they are. Raises
    :class:`~central_api.errors.BarcodeTakenError` (nothing changed) when a barcode belongs
    to another item, :class:`~central_api.errors.InvalidError` for a check digit, unit or
    category that does not hold. The financial amounts are set when given and kept when
    None; they never enter the change feed. ``connection`` must not be in a transaction.
    """
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        existed, before, written = _save(
            connection,
            feed,
            item=item,
            barcodes=_specs(item.item_code, barcodes),
            units=units,
            financial={"cost": cost, "price": price, "purchase_price": purchase_price},
            valuation=valuation,
            now=now,
        )
        _record(
            connection,
            audit,
            "item.update" if existed else "item.create",
            written,
            before=before,
            now=now,
        )
        return written


def create_item(
    *,
    connection: Connection,
    item_code: str | None,
    fields: dict[str, Any],
    barcodes: Sequence[BarcodeSpec] | None,
    units: Sequence[UnitSpec] | None,
    audit: AuditContext,
    financial: dict[str, Decimal | None] | None = None,
    valuation: str | None = None,
    claim: idempotency.IdempotencyClaim | None = None,
    now: datetime | None = None,
) -> Item:
    """Make a new item; without ``item_code`` its category's coding rule makes the code.

    ``fields`` are :class:`~jxc.feed.ItemData`'s other fields. Raises
    :class:`ItemExistsError` for a code that is taken, and
    :class:`~central_api.services.idempotency.IdempotentReplay` for a repeated key.
    """
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        idempotency.check(connection, claim)
        category = fields.get("category")
        if item_code is None:
            item_code = next_item_code(connection, category)
        elif _exists(connection, item_code):
            raise ItemExistsError(item_code)
        item = _item_data(item_code, fields)
        # The code is free (checked above, or made free by the coding rule) and the feed
        # counter's lock keeps it so: _save need not read the item again to know it is new.
        _existed, _before, written = _save(
            connection,
            feed,
            item=item,
            barcodes=barcodes,
            units=units,
            financial=financial or {},
            valuation=valuation,
            now=now,
            known_new=True,
        )
        idempotency.remember(connection, claim, item_code, now=now)
        _record(connection, audit, "item.create", written, before=None, now=now)
        return written


def deactivate_item(
    *, connection: Connection, item_code: str, audit: AuditContext, now: datetime | None = None
) -> Item:
    """Mark the item inactive (kept, with its barcodes); a no-op if it already is."""
    return _set_state(connection, item_code, audit, now, action="item.deactivate", active=False)


def restore_item(
    *, connection: Connection, item_code: str, audit: AuditContext, now: datetime | None = None
) -> Item:
    """Bring an archived item back, active; a no-op for an item that is not archived."""
    return _set_state(
        connection, item_code, audit, now, action="item.restore", active=True, archived=False
    )


def remove_item(
    *, connection: Connection, item_code: str, audit: AuditContext, now: datetime | None = None
) -> RemoveOutcome:
    """Delete the item if stock of it never moved anywhere; else archive it.

    A deleted item leaves tombstones in the feed for itself, its units, barcodes and
    levels; an archived one is sent as inactive and archived.
    """
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        current = _read_one(connection, item_code)
        before = _audit_state(current)
        moved = connection.execute(
            select(exists().where(stock_balances.c.item == item_code))
        ).scalar()
        if moved:
            if not current.archived or current.active:
                _write_item(
                    connection,
                    feed,
                    _as_data(current).model_copy(update={"active": False, "archived": True}),
                    exists=True,
                    now=now,
                )
            written = _read_one(connection, item_code)
            _record(connection, audit, "item.archive", written, before=before, now=now)
            return RemoveOutcome(item_code=item_code, outcome="archived", item=written)
        for level in connection.execute(
            select(item_site_levels.c.site_id)
            .where(item_site_levels.c.item_code == item_code)
            .order_by(item_site_levels.c.site_id)
        ).scalars():
            feed.append(
                entity=FeedEntity.ITEM_SITE,
                key=item_code,
                op=ChangeOp.DELETE,
                data=None,
                site_id=level,
            )
        connection.execute(
            delete(item_site_levels).where(item_site_levels.c.item_code == item_code)
        )
        for barcode in current.barcodes:
            feed.append(
                entity=FeedEntity.BARCODE, key=barcode.barcode, op=ChangeOp.DELETE, data=None
            )
        connection.execute(delete(item_barcodes).where(item_barcodes.c.item_code == item_code))
        for unit in current.units:
            feed.append(
                entity=FeedEntity.ITEM_UNIT,
                key=_unit_key(item_code, unit.uom),
                op=ChangeOp.DELETE,
                data=None,
            )
        connection.execute(delete(item_units).where(item_units.c.item_code == item_code))
        feed.append(entity=FeedEntity.ITEM, key=item_code, op=ChangeOp.DELETE, data=None)
        connection.execute(delete(items).where(items.c.item_code == item_code))
        record(
            connection,
            audit,
            action="item.delete",
            resource="item",
            resource_id=item_code,
            before=before,
            after=None,
            at=now,
        )
        return RemoveOutcome(item_code=item_code, outcome="deleted", item=None)


def delete_barcode(
    *,
    connection: Connection,
    barcode: str,
    audit: AuditContext,
    item_code: str | None = None,
    now: datetime | None = None,
) -> Item:
    """Withdraw ``barcode`` (a tombstone in the feed) and return the item that had it.

    With ``item_code`` the barcode must belong to that item. Raises
    :class:`~central_api.errors.UnknownItemError` or
    :class:`~central_api.errors.UnknownBarcodeError` when there is nothing to delete.
    """
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        if item_code is not None and not _exists(connection, item_code):
            raise UnknownItemError(item_code)
        owner = connection.execute(
            select(item_barcodes.c.item_code).where(item_barcodes.c.barcode == barcode)
        ).scalar_one_or_none()
        if owner is None or (item_code is not None and owner != item_code):
            raise UnknownBarcodeError(item_code=item_code, barcode=barcode, owner=owner)
        before = _audit_state(_read_one(connection, owner))
        feed.append(entity=FeedEntity.BARCODE, key=barcode, op=ChangeOp.DELETE, data=None)
        connection.execute(delete(item_barcodes).where(item_barcodes.c.barcode == barcode))
        written = _read_one(connection, owner)
        _record(connection, audit, "item.remove_barcode", written, before=before, now=now)
        return written


# --- coding rules ---------------------------------------------------------------------


def next_item_code(connection: Connection, category: str | None) -> str:
    """The next free code of ``category``'s rule, taken in the caller's transaction.

    The number comes from one atomic upsert of the prefix's ``code_sequences`` row
    (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): the row stays locked until the
    caller commits, so two creates never get one number, and a create that rolls back
    gives its number back. A number whose code was already given by hand is skipped.
    """
    if category is None:
        raise InvalidError(
            "item_code: give one, or a category whose coding rule makes codes (code_prefix)"
        )
    rule = connection.execute(
        select(categories.c.code_prefix, categories.c.code_digits).where(
            categories.c.code == category
        )
    ).one_or_none()
    if rule is None:
        raise InvalidError(f"category: {category!r} does not exist")
    if rule.code_prefix is None:
        raise InvalidError(
            f"item_code: category {category!r} has no coding rule (code_prefix); give a code"
        )
    while True:
        number = _next_number(connection, rule.code_prefix)
        code = f"{rule.code_prefix}{number:0{rule.code_digits}d}"
        if len(code) > 64:
            raise ConflictError(f"category {category!r}: the coding rule ran out of codes")
        if not _exists(connection, code):
            return code


def _next_number(connection: Connection, prefix: str) -> int:
    dialect = connection.dialect.name
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    first = maker(code_sequences).values(prefix=prefix, last_value=1)
    taken = first.on_conflict_do_update(
        index_elements=[code_sequences.c.prefix],
        set_={"last_value": code_sequences.c.last_value + 1},
    ).returning(code_sequences.c.last_value)
    return int(connection.execute(taken).scalar_one())


# --- per-site levels ------------------------------------------------------------------


def put_site_levels(
    *,
    connection: Connection,
    site_id: str,
    item_code: str,
    safety_stock: Decimal,
    reorder_point: Decimal,
    reorder_qty: Decimal,
    audit: AuditContext,
    now: datetime | None = None,
) -> SiteLevels:
    """Set the item's safety stock, reorder point and quantity at ``site_id``."""
    for name, value in (
        ("safety_stock", safety_stock),
        ("reorder_point", reorder_point),
        ("reorder_qty", reorder_qty),
    ):
        if value < 0:
            raise InvalidError(f"{name}: must not be negative")
    if reorder_point < safety_stock:
        raise InvalidError(
            f"reorder_point: {reorder_point} is below safety_stock {safety_stock}; "
            "reordering must start before stock is below its safety level"
        )
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        if not _exists(connection, item_code):
            raise UnknownItemError(item_code)
        _check_site(connection, site_id)
        stored = _levels(connection, site_id, item_code)
        before = None if stored is None else _levels_state(stored)
        wanted = (safety_stock, reorder_point, reorder_qty)
        if (
            stored is None
            or (
                stored.safety_stock,
                stored.reorder_point,
                stored.reorder_qty,
            )
            != wanted
        ):
            data = ItemSiteData(
                item_code=item_code,
                safety_stock=safety_stock,
                reorder_point=reorder_point,
                reorder_qty=reorder_qty,
            )
            version = feed.append(
                entity=FeedEntity.ITEM_SITE,
                key=item_code,
                op=ChangeOp.UPSERT,
                data=data.model_dump(mode="json"),
                site_id=site_id,
            )
            values = {
                "safety_stock": safety_stock,
                "reorder_point": reorder_point,
                "reorder_qty": reorder_qty,
                "version": version,
                "updated_at": now,
            }
            if stored is None:
                connection.execute(
                    insert(item_site_levels).values(site_id=site_id, item_code=item_code, **values)
                )
            else:
                connection.execute(
                    update(item_site_levels)
                    .where(
                        item_site_levels.c.site_id == site_id,
                        item_site_levels.c.item_code == item_code,
                    )
                    .values(**values)
                )
        written = _levels(connection, site_id, item_code)
        assert written is not None
        record(
            connection,
            audit,
            action="item.set_levels",
            resource="item",
            resource_id=item_code,
            site_id=site_id,
            before=before,
            after=_levels_state(written),
            at=now,
        )
        return written


def delete_site_levels(
    *,
    connection: Connection,
    site_id: str,
    item_code: str,
    audit: AuditContext,
    now: datetime | None = None,
) -> None:
    """Remove the item's levels at the site (a tombstone to that site)."""
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        stored = _levels(connection, site_id, item_code)
        if stored is None:
            raise UnknownLevelsError(site_id, item_code)
        feed.append(
            entity=FeedEntity.ITEM_SITE,
            key=item_code,
            op=ChangeOp.DELETE,
            data=None,
            site_id=site_id,
        )
        connection.execute(
            delete(item_site_levels).where(
                item_site_levels.c.site_id == site_id, item_site_levels.c.item_code == item_code
            )
        )
        record(
            connection,
            audit,
            action="item.remove_levels",
            resource="item",
            resource_id=item_code,
            site_id=site_id,
            before=_levels_state(stored),
            after=None,
            at=now,
        )


def list_site_levels(
    *,
    connection: Connection,
    site_id: str,
    after: str | None,
    limit: int,
    below: Decimal | None = None,
) -> tuple[list[SiteLevels], str | None]:
    """The levels of ``site_id``'s items after item code ``after``, in item code order."""
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_ITEMS_PAGE}, got {limit}")
    query = (
        select(item_site_levels)
        .where(item_site_levels.c.site_id == site_id)
        .order_by(item_site_levels.c.item_code)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(item_site_levels.c.item_code > after)
    with read_snapshot(connection):
        rows = connection.execute(query).all()
    found = [_levels_row(row) for row in rows]
    page = found[:limit]
    return page, (page[-1].item_code if len(found) > limit else None)


def get_site_levels(*, connection: Connection, site_id: str, item_code: str) -> SiteLevels:
    with read_snapshot(connection):
        stored = _levels(connection, site_id, item_code)
    if stored is None:
        raise UnknownLevelsError(site_id, item_code)
    return stored


def _levels(connection: Connection, site_id: str, item_code: str) -> SiteLevels | None:
    row = connection.execute(
        select(item_site_levels).where(
            item_site_levels.c.site_id == site_id, item_site_levels.c.item_code == item_code
        )
    ).one_or_none()
    return None if row is None else _levels_row(row)


def _levels_row(row: Any) -> SiteLevels:
    return SiteLevels(
        site_id=row.site_id,
        item_code=row.item_code,
        safety_stock=row.safety_stock,
        reorder_point=row.reorder_point,
        reorder_qty=row.reorder_qty,
        version=row.version,
        updated_at=_utc(row.updated_at),
    )


def _levels_state(levels: SiteLevels) -> dict[str, Any]:
    return {
        "site_id": levels.site_id,
        "safety_stock": levels.safety_stock,
        "reorder_point": levels.reorder_point,
        "reorder_qty": levels.reorder_qty,
    }


def _check_site(connection: Connection, site_id: str) -> None:
    found = connection.execute(
        select(site_table.c.site_id).where(site_table.c.site_id == site_id)
    ).scalar_one_or_none()
    if found is None:
        raise UnknownSiteRecordError(site_id)


# --- reading --------------------------------------------------------------------------


def get_item(*, connection: Connection, item_code: str) -> Item:
    """The item with its units and barcodes; raises UnknownItemError."""
    with read_snapshot(connection):
        return _read_one(connection, item_code)


def list_items(
    *,
    connection: Connection,
    after: str | None,
    limit: int,
    filters: ItemFilter | None = None,
) -> ItemPage:
    """Up to ``limit`` items after item code ``after``, in item_code order, with barcodes.

    Without ``filters`` every item is listed, archived ones too (what the feed tests and
    older clients expect); the API passes its own filter, which leaves archived ones out.
    """
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_ITEMS_PAGE}, got {limit}")
    chosen = filters or ItemFilter(archived=None)
    params: dict[str, Any] = {"limit": limit + 1}
    if chosen.archived is not None:
        params["archived"] = chosen.archived
    if chosen.active is not None:
        params["active"] = chosen.active
    if after is not None:
        params["after"] = after
    if chosen.barcode is not None:
        params["barcodes"] = gtin_spellings(chosen.barcode)
    if chosen.q:
        params["q_part"] = _like_escaped(chosen.q.lower())
        params["q_barcodes"] = gtin_spellings(chosen.q)
    with read_snapshot(connection):
        if chosen.category is not None:
            params["categories"] = category_and_below(connection, chosen.category)
        shape = (
            chosen.archived is not None,
            chosen.active is not None,
            chosen.category is not None,
            chosen.barcode is not None,
            bool(chosen.q),
            after is not None,
        )
        query = _LIST_QUERIES.get(shape)
        if query is None:
            query = _LIST_QUERIES[shape] = _list_query(shape)
        found = _assemble(
            connection.execute(query, params).all(),
            lambda codes: connection.execute(_PAGE_UNITS, {"codes": codes}).all(),
        )
    page = found[:limit]
    return ItemPage(items=page, next_after=page[-1].item_code if len(found) > limit else None)


_LIST_QUERIES: dict[tuple[bool, ...], Select[Any]] = {}
"""A page's statement for each combination of filters given, built on first use with
bound parameters: building it per call (a subquery, twenty column proxies, the
filters coerced) cost as much as running it (``docs/performance.md``, "The item page")."""


def _list_query(shape: tuple[bool, ...]) -> Select[Any]:
    """The page's statement for the filters given (``shape``: whether archived, active,
    category, barcode, q and after are given, in that order); its values are the
    parameters :func:`list_items` passes."""
    archived, active, category, barcode, q, after = shape
    conditions: list[ColumnElement[bool]] = []
    if archived:
        conditions.append(items.c.archived == bindparam("archived", type_=Boolean))
    if active:
        conditions.append(items.c.active == bindparam("active", type_=Boolean))
    if category:
        conditions.append(items.c.category_code.in_(bindparam("categories", expanding=True)))
    if barcode:
        conditions.append(_has_barcode("barcodes"))
    if q:
        part = bindparam("q_part", type_=String)
        conditions.append(
            or_(
                # Lowered on both sides: PostgreSQL's LIKE minds case, SQLite's does not,
                # and a clerk typing "abc" means item ABC-1 on either.
                func.lower(items.c.item_code).startswith(part, escape=_ESCAPE),
                func.lower(items.c.name).contains(part, escape=_ESCAPE),
                func.lower(items.c.name_en).contains(part, escape=_ESCAPE),
                _has_barcode("q_barcodes"),
            )
        )
    if after:
        conditions.append(items.c.item_code > bindparam("after", type_=String))
    return _page_query(and_(*conditions) if conditions else None, bindparam("limit", type_=Integer))


_ESCAPE = "/"


def _like_escaped(text: str) -> str:
    """``text`` with LIKE's wildcards (and the escape character) escaped by ``/``, as
    SQLAlchemy's ``autoescape=True`` does for a literal (it refuses a bound parameter)."""
    return (
        text.replace(_ESCAPE, _ESCAPE * 2).replace("%", _ESCAPE + "%").replace("_", _ESCAPE + "_")
    )


def _has_barcode(parameter: str) -> ColumnElement[bool]:
    """The item holds one of the barcodes in the list parameter ``parameter``."""
    return items.c.item_code.in_(
        select(item_barcodes.c.item_code).where(
            item_barcodes.c.barcode.in_(bindparam(parameter, expanding=True))
        )
    )


def category_and_below(connection: Connection, code: str) -> list[str]:
    """``code`` and every category below it (the tree is small: read it whole)."""
    children: dict[str | None, list[str]] = {}
    for row in connection.execute(select(categories.c.code, categories.c.parent_code)):
        children.setdefault(row.parent_code, []).append(row.code)
    found, waiting = [], [code]
    while waiting:
        current = waiting.pop()
        if current in found:
            continue
        found.append(current)
        waiting.extend(children.get(current, ()))
    return found


# --- the write itself -----------------------------------------------------------------


def _specs(
    item_code: str, barcodes: Sequence[BarcodeData | BarcodeSpec] | None
) -> list[BarcodeSpec] | None:
    if barcodes is None:
        return None
    specs = []
    seen: set[str] = set()
    for barcode in barcodes:
        if isinstance(barcode, BarcodeData):
            if barcode.item_code != item_code:
                raise ValueError(f"barcode {barcode.barcode!r} is for item {barcode.item_code!r}")
            spec = BarcodeSpec(barcode=barcode.barcode, uom=barcode.uom, qty_per=barcode.qty_per)
        else:
            spec = barcode
        if spec.barcode in seen:
            raise ValueError(f"barcode {spec.barcode!r} is given twice")
        seen.add(spec.barcode)
        specs.append(spec)
    return specs


def _item_data(item_code: str, fields: dict[str, Any]) -> ItemData:
    return ItemData(item_code=item_code, **fields)


def _save(
    connection: Connection,
    feed: FeedWriter,
    *,
    item: ItemData,
    barcodes: Sequence[BarcodeSpec] | None,
    units: Sequence[UnitSpec] | None,
    financial: dict[str, Decimal | None],
    valuation: str | None,
    now: datetime,
    known_new: bool = False,
) -> tuple[bool, dict[str, Any] | None, Item]:
    """Write one item in the caller's feed transaction; (whether it existed, before, the
    item as stored now). ``known_new``: the caller has checked, under the feed counter's
    lock, that no item has the code."""
    code = item.item_code
    current: Item | None = None
    if not known_new:
        try:
            current = _read_one(connection, code)
        except UnknownItemError:
            current = None
    before = None if current is None else _audit_state(current)
    if current is not None and current.archived:
        if item.active:
            raise ItemArchivedError(code)
        item = item.model_copy(update={"archived": True})
    elif item.archived:
        item = item.model_copy(update={"archived": False})
    if item.category is not None:
        _check_category(connection, item.category, code if current is None else None)
    if valuation is not None and valuation not in VALUATION_METHODS:
        raise InvalidError(f"valuation: must be one of {', '.join(VALUATION_METHODS)}")
    held_units = {} if current is None else {unit.uom: unit.factor for unit in current.units}
    factors = held_units if units is None else _resolve_units(item.uom, units)
    if units is None and item.uom in held_units:
        raise InvalidError(
            f"uom: {item.uom!r} is one of the item's other units; send units without it"
        )
    held_codes = [] if current is None else current.barcodes
    wanted = (
        _kept_barcodes(held_codes, factors)
        if barcodes is None
        else _resolve_barcodes(code, item.uom, factors, barcodes)
    )
    extra: dict[str, Any] = {name: value for name, value in financial.items() if value is not None}
    if valuation is not None and (current is None or current.valuation != valuation):
        extra["valuation"] = valuation
    inserted = _write_row(connection, feed, item, current, extra, now=now)
    if units is not None:
        _replace_units(connection, feed, item_code=code, held=held_units, wanted=factors, now=now)
    _replace_barcodes(connection, feed, item_code=code, held=held_codes, wanted=wanted, now=now)
    if inserted is not None and not factors and not wanted:
        # A new item without units or barcodes: the row its insert returned is all of it
        # (no unit or barcode row can name an item that did not exist: foreign keys).
        written = _assemble([(*inserted, *_NO_BARCODE)], lambda _codes: ())[0]
    else:
        written = _read_one(connection, code)
    return current is not None, before, written


def _write_row(
    connection: Connection,
    feed: FeedWriter,
    item: ItemData,
    current: Item | None,
    extra: dict[str, Any],
    *,
    now: datetime,
) -> tuple[Any, ...] | None:
    """The item's own row: a new one inserted (and returned, as stored), or the held one
    updated where it changed (None)."""
    if current is None:
        return _insert_item(connection, feed, item, extra, now=now)
    if _as_data(current) != item:
        _write_item(connection, feed, item, exists=True, now=now)
    if extra:
        connection.execute(update(items).where(items.c.item_code == item.item_code).values(**extra))
    return None


def _kept_barcodes(
    held: Sequence[ItemBarcode], factors: dict[str, Decimal]
) -> dict[str, tuple[str | None, Decimal, str]]:
    """The item's barcodes as they are, their counts following changed unit factors."""
    lost = [barcode for barcode in held if barcode.uom is not None and barcode.uom not in factors]
    if lost:
        raise InvalidError(
            f"units: {lost[0].uom!r} is the pack unit of barcode {lost[0].barcode!r}; "
            "change or remove that barcode in the same request"
        )
    return {
        barcode.barcode: (
            barcode.uom,
            barcode.qty_per if barcode.uom is None else factors[barcode.uom],
            barcode.kind,
        )
        for barcode in held
    }


def _check_category(connection: Connection, category: str, new_code: str | None) -> None:
    rule = connection.execute(
        select(categories.c.code_pattern).where(categories.c.code == category)
    ).one_or_none()
    if rule is None:
        raise InvalidError(f"category: {category!r} does not exist")
    if (
        new_code is not None
        and rule.code_pattern is not None
        and not mask_matches(rule.code_pattern, new_code)
    ):
        raise InvalidError(
            f"item_code: {new_code!r} does not match category {category!r}'s coding "
            f"pattern {rule.code_pattern!r}"
        )


def _resolve_units(base: str, units: Sequence[UnitSpec]) -> dict[str, Decimal]:
    """Each unit's factor in base units, resolving ``of`` chains; InvalidError if wrong."""
    given: dict[str, UnitSpec] = {}
    for index, unit in enumerate(units):
        where = f"units[{index}]"
        if unit.uom == base:
            raise InvalidError(f"{where}.uom: {unit.uom!r} is the item's base unit")
        if unit.uom in given:
            raise InvalidError(f"{where}.uom: {unit.uom!r} is listed twice")
        if unit.factor <= 0:
            raise InvalidError(f"{where}.factor: must be positive")
        given[unit.uom] = unit
    resolved: dict[str, Decimal] = {}

    def factor_of(uom: str, trail: tuple[str, ...]) -> Decimal:
        if uom == base:
            return Decimal(1)
        if uom in resolved:
            return resolved[uom]
        unit = given.get(uom)
        if unit is None:
            raise InvalidError(
                f"units: {trail[-1]!r} is given in {uom!r}, which is neither the base unit "
                f"{base!r} nor another unit of the item"
            )
        if uom in trail:
            raise InvalidError(f"units: {' -> '.join((*trail, uom))} goes round in a circle")
        total = unit.factor * factor_of(unit.of or base, (*trail, uom))
        if total >= MAX_ABS_AMOUNT:
            raise InvalidError(f"units: {uom!r} = {total} {base}, more than the largest amount")
        try:
            to_micro_units(total)
        except ValueError as exc:
            raise InvalidError(f"units: {uom!r} = {total} {base}: {exc}") from None
        resolved[uom] = total.normalize() if total != total.to_integral_value() else total
        return resolved[uom]

    for uom in given:
        factor_of(uom, ())
    return resolved


def _resolve_barcodes(
    item_code: str, base: str, factors: dict[str, Decimal], barcodes: Sequence[BarcodeSpec]
) -> dict[str, tuple[str | None, Decimal, str]]:
    wanted: dict[str, tuple[str | None, Decimal, str]] = {}
    for index, spec in enumerate(barcodes):
        where = f"barcodes[{index}]"
        try:
            kind = barcode_kind(spec.barcode, spec.kind)
        except InvalidError as exc:
            raise InvalidError(f"{where}.barcode: {exc}") from None
        uom = None if spec.uom in (None, base) else spec.uom
        if uom is not None and uom not in factors:
            raise InvalidError(
                f"{where}.uom: {uom!r} is not a unit of item {item_code!r}; add it under units"
            )
        factor = Decimal(1) if uom is None else factors[uom]
        if spec.qty_per is not None and spec.qty_per <= 0:
            raise InvalidError(f"{where}.qty_per: must be positive")
        if spec.uom is not None and spec.qty_per is not None and spec.qty_per != factor:
            raise InvalidError(
                f"{where}.qty_per: {spec.qty_per} disagrees with unit {spec.uom!r}, which "
                f"holds {factor} {base}; give one of the two"
            )
        qty_per = spec.qty_per if spec.uom is None and spec.qty_per is not None else factor
        wanted[spec.barcode] = (uom, qty_per, kind)
    return wanted


def _set_state(
    connection: Connection,
    item_code: str,
    audit: AuditContext,
    now: datetime | None,
    *,
    action: str,
    active: bool,
    archived: bool | None = None,
) -> Item:
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        current = _read_one(connection, item_code)
        before = _audit_state(current)
        if archived is None and current.archived:
            wanted = _as_data(current).model_copy(update={"active": False})
        elif archived is False and not current.archived:
            wanted = _as_data(current)
        else:
            update_fields: dict[str, Any] = {"active": active}
            if archived is not None:
                update_fields["archived"] = archived
            wanted = _as_data(current).model_copy(update=update_fields)
        if wanted != _as_data(current):
            _write_item(connection, feed, wanted, exists=True, now=now)
        written = _read_one(connection, item_code)
        _record(connection, audit, action, written, before=before, now=now)
        return written


def _as_data(item: Item) -> ItemData:
    """The feed's view of a stored item."""
    return ItemData(
        item_code=item.item_code,
        name=item.name,
        uom=item.uom,
        active=item.active,
        name_en=item.name_en,
        category=item.category,
        lot_tracked=item.lot_tracked,
        expiry_tracked=item.expiry_tracked,
        serial_tracked=item.serial_tracked,
        shelf_life_days=item.shelf_life_days,
        min_remaining_days=item.min_remaining_days,
        unit_weight=item.unit_weight,
        weight_tolerance=item.weight_tolerance,
        archived=item.archived,
    )


def item_feed_data(item: ItemData) -> dict[str, Any]:
    """What the feed carries for ``item``: the four fields every agent knows, and each
    newer one only while it differs from its default, so an item that uses none of them
    reads exactly as it did before they existed."""
    data = item.model_dump(mode="json")
    defaults = _ITEM_DEFAULTS.model_dump(mode="json")
    return {
        key: value
        for key, value in data.items()
        if key in _BASE_FEED_FIELDS or value != defaults[key]
    }


def barcode_feed_data(
    item_code: str, barcode: str, uom: str | None, qty_per: Decimal
) -> dict[str, Any]:
    data = BarcodeData(barcode=barcode, item_code=item_code, qty_per=qty_per, uom=uom)
    return data.model_dump(mode="json", exclude_none=True)


def _audit_state(item: Item) -> dict[str, Any]:
    """What the audit log keeps of an item: what a person can change, not versions."""
    return {
        **item_feed_data(_as_data(item)),
        "valuation": item.valuation,
        "units": {unit.uom: unit.factor for unit in item.units},
        "barcodes": {barcode.barcode: barcode.qty_per for barcode in item.barcodes},
        "cost": item.cost,
        "price": item.price,
        "purchase_price": item.purchase_price,
    }


def _record(
    connection: Connection,
    audit: AuditContext,
    action: str,
    item: Item,
    *,
    before: dict[str, Any] | None,
    now: datetime,
) -> None:
    record(
        connection,
        audit,
        action=action,
        resource="item",
        resource_id=item.item_code,
        before=before,
        after=_audit_state(item),
        at=now,
    )


def _insert_item(
    connection: Connection,
    feed: FeedWriter,
    item: ItemData,
    extra: dict[str, Any],
    *,
    now: datetime,
) -> tuple[Any, ...]:
    """Insert a new item (with ``extra``: its financial amounts and valuation, when
    given) and return its row as stored, in :func:`_item_columns`' order."""
    values = {
        **_item_values(feed, item, now=now),
        "item_code": item.item_code,
        "cost": None,
        "price": None,
        "purchase_price": None,
        "valuation": _DEFAULT_VALUATION,
        **extra,
    }
    # At the driver (central_api.core.driver): every create runs it; the RETURNING row is
    # the item as stored, so a create need not read it back.
    found = driver.rows(connection, driver.prepared(_INSERT_ITEM, connection.dialect), values)
    return found[0]


def _write_item(
    connection: Connection, feed: FeedWriter, item: ItemData, *, exists: bool, now: datetime
) -> None:
    """Update (``exists``) or insert the item's feed fields; :func:`_save` creates an item
    with :func:`_insert_item` instead, which returns the row."""
    values = _item_values(feed, item, now=now)
    if exists:
        connection.execute(_UPDATE_ITEM, {**values, "the_code": item.item_code})
    else:
        connection.execute(_PLAIN_INSERT_ITEM, {**values, "item_code": item.item_code})


def _item_values(feed: FeedWriter, item: ItemData, *, now: datetime) -> dict[str, Any]:
    """The item's row as the feed sees it, its change appended to the feed."""
    version = feed.append(
        entity=FeedEntity.ITEM,
        key=item.item_code,
        op=ChangeOp.UPSERT,
        data=item_feed_data(item),
    )
    return {
        "name": item.name,
        "uom": item.uom,
        "active": item.active,
        "name_en": item.name_en,
        "category_code": item.category,
        "lot_tracked": item.lot_tracked,
        "expiry_tracked": item.expiry_tracked,
        "serial_tracked": item.serial_tracked,
        "shelf_life_days": item.shelf_life_days,
        "min_remaining_days": item.min_remaining_days,
        "unit_weight": item.unit_weight,
        "weight_tolerance": item.weight_tolerance,
        "archived": item.archived,
        "version": version,
        "updated_at": now,
    }


# Built once, the values given at execution: ``insert(items).values(**values)`` per call
# coerced every value into a bound parameter and computed a new cache key, which cost more
# than the insert itself (docs/performance.md, "Cost per request: pushes and item creates").
_PLAIN_INSERT_ITEM = insert(items)
_UPDATE_ITEM = update(items).where(items.c.item_code == bindparam("the_code"))


def _unit_key(item_code: str, uom: str) -> str:
    return f"{item_code} {uom}"


def _replace_units(
    connection: Connection,
    feed: FeedWriter,
    *,
    item_code: str,
    held: dict[str, Decimal],
    wanted: dict[str, Decimal],
    now: datetime,
) -> None:
    for uom in sorted(held.keys() - wanted.keys()):
        feed.append(
            entity=FeedEntity.ITEM_UNIT,
            key=_unit_key(item_code, uom),
            op=ChangeOp.DELETE,
            data=None,
        )
        connection.execute(
            delete(item_units).where(item_units.c.item_code == item_code, item_units.c.uom == uom)
        )
    for uom in sorted(wanted):
        factor = wanted[uom]
        if held.get(uom) == factor:
            continue
        data = ItemUnitData(item_code=item_code, uom=uom, factor=factor)
        version = feed.append(
            entity=FeedEntity.ITEM_UNIT,
            key=_unit_key(item_code, uom),
            op=ChangeOp.UPSERT,
            data=data.model_dump(mode="json"),
        )
        values = {"factor": factor, "version": version, "updated_at": now}
        if uom in held:
            connection.execute(
                update(item_units)
                .where(item_units.c.item_code == item_code, item_units.c.uom == uom)
                .values(**values)
            )
        else:
            connection.execute(insert(item_units).values(item_code=item_code, uom=uom, **values))


def _replace_barcodes(
    connection: Connection,
    feed: FeedWriter,
    *,
    item_code: str,
    held: Iterable[ItemBarcode],
    wanted: dict[str, tuple[str | None, Decimal, str]],
    now: datetime,
) -> None:
    """Make ``wanted`` (barcode -> (uom, qty_per, kind)) the item's barcode set."""
    _refuse_taken(connection, item_code, wanted)
    holding = {barcode.barcode: barcode for barcode in held}
    for barcode in sorted(holding.keys() - wanted.keys()):
        feed.append(entity=FeedEntity.BARCODE, key=barcode, op=ChangeOp.DELETE, data=None)
        connection.execute(delete(item_barcodes).where(item_barcodes.c.barcode == barcode))
    for barcode in sorted(wanted):
        uom, qty_per, kind = wanted[barcode]
        old = holding.get(barcode)
        if old is not None and (old.uom, old.qty_per, old.kind) == (uom, qty_per, kind):
            continue
        values: dict[str, Any] = {"qty_per": qty_per, "uom": uom, "kind": kind}
        if old is None or (old.uom, old.qty_per) != (uom, qty_per):
            values["version"] = feed.append(
                entity=FeedEntity.BARCODE,
                key=barcode,
                op=ChangeOp.UPSERT,
                data=barcode_feed_data(item_code, barcode, uom, qty_per),
            )
            values["updated_at"] = now
        if old is not None:
            connection.execute(
                update(item_barcodes).where(item_barcodes.c.barcode == barcode).values(**values)
            )
        else:
            connection.execute(
                insert(item_barcodes).values(barcode=barcode, item_code=item_code, **values)
            )


def _refuse_taken(connection: Connection, item_code: str, wanted: Iterable[str]) -> None:
    codes = sorted(wanted)
    if not codes:
        return
    taken = connection.execute(
        select(item_barcodes.c.barcode, item_barcodes.c.item_code)
        .where(item_barcodes.c.barcode.in_(codes), item_barcodes.c.item_code != item_code)
        .order_by(item_barcodes.c.barcode)
        .limit(1)
    ).one_or_none()
    if taken is not None:
        raise BarcodeTakenError(
            barcode=taken.barcode, owner=taken.item_code, requested_for=item_code
        )


# --- reading rows ---------------------------------------------------------------------


def _exists(connection: Connection, item_code: str) -> bool:
    # At the driver (central_api.core.driver): every create with a code runs it.
    found = driver.rows(
        connection, driver.prepared(_ITEM_EXISTS, connection.dialect), {"item_code": item_code}
    )
    return bool(found)


_ITEM_EXISTS = select(items.c.item_code).where(items.c.item_code == bindparam("item_code"))


def _raw(column: Any) -> Any:
    """``column`` as the stored integer of micro-units, without the type's conversion:
    :func:`_assemble` converts each distinct value once (a page repeats a few)."""
    return type_coerce(column, BigInteger).label(column.name)


def _item_columns(source: Any) -> tuple[Any, ...]:
    """An item's columns from ``source`` (the table or a page of it) in the order
    :func:`_assemble` unpacks them, the amounts raw."""
    c = source.c
    return (
        c.item_code,
        c.name,
        c.uom,
        c.active,
        c.version,
        c.updated_at,
        _raw(c.cost),
        _raw(c.price),
        _raw(c.purchase_price),
        c.name_en,
        c.category_code,
        c.lot_tracked,
        c.expiry_tracked,
        c.serial_tracked,
        c.shelf_life_days,
        c.min_remaining_days,
        _raw(c.unit_weight),
        _raw(c.weight_tolerance),
        c.valuation,
        c.archived,
    )


_BARCODE_COLUMNS = (
    item_barcodes.c.barcode,
    type_coerce(item_barcodes.c.qty_per, BigInteger).label("qty_per"),
    item_barcodes.c.uom.label("barcode_uom"),
    item_barcodes.c.kind.label("barcode_kind"),
    item_barcodes.c.version.label("barcode_version"),
    item_barcodes.c.updated_at.label("barcode_updated_at"),
)

_ONE_ITEM = (
    select(*_item_columns(items), *_BARCODE_COLUMNS)
    .select_from(items.outerjoin(item_barcodes, item_barcodes.c.item_code == items.c.item_code))
    .where(items.c.item_code == bindparam("item_code"))
    .order_by(item_barcodes.c.barcode)
)
"""One item with its barcodes, built once: every create, update and read of an item ends
by reading it back, and building the page query per call (a subquery, twenty column
proxies) cost more than running it (``docs/performance.md``, "Cost per request")."""

_NO_BARCODE = (None,) * len(_BARCODE_COLUMNS)
"""The barcode columns of an item without barcodes in :data:`_ONE_ITEM`'s rows."""

_INSERT_ITEM = (
    insert(items)
    .values({column.name: bindparam(column.name, type_=column.type) for column in items.c})
    .returning(*_item_columns(items))
)
"""A new item, every column given, returned as :data:`_ONE_ITEM` reads it."""

_DEFAULT_VALUATION = cast(DefaultClause, items.c.valuation.server_default).arg
"""What a new item's valuation is when not given: the column's own default."""

_UNIT_COLUMNS = (
    item_units.c.item_code,
    item_units.c.uom,
    item_units.c.factor,
    item_units.c.version,
    item_units.c.updated_at,
)

_ONE_ITEMS_UNITS = (
    select(*_UNIT_COLUMNS)
    .where(item_units.c.item_code == bindparam("item_code"))
    .order_by(item_units.c.uom)
)

_PAGE_UNITS = (
    select(*_UNIT_COLUMNS)
    .where(item_units.c.item_code.in_(bindparam("codes", expanding=True)))
    .order_by(item_units.c.item_code, item_units.c.uom)
)


def _read_one(connection: Connection, item_code: str) -> Item:
    # At the driver (central_api.core.driver): every create, update and read of an item
    # ends here, and SQLAlchemy's execution of each cost more than the database's.
    dialect, key = connection.dialect, {"item_code": item_code}
    found = _assemble(
        driver.rows(connection, driver.prepared(_ONE_ITEM, dialect), key),
        lambda _codes: driver.rows(connection, driver.prepared(_ONE_ITEMS_UNITS, dialect), key),
    )
    if not found:
        raise UnknownItemError(item_code)
    return found[0]


def _page_query(condition: ColumnElement[bool] | None, limit: Any) -> Select[Any]:
    """Items matching ``condition`` in item_code order, up to ``limit`` (a number or a
    bound parameter), joined to their barcodes.

    Items and barcodes are one statement (joined), so that on PostgreSQL an item and its
    barcodes come from the same snapshot; units are a second statement.
    """
    chosen = select(items).order_by(items.c.item_code).limit(limit)
    if condition is not None:
        chosen = chosen.where(condition)
    page = chosen.subquery()
    return (
        select(*_item_columns(page), *_BARCODE_COLUMNS)
        .select_from(page.outerjoin(item_barcodes, item_barcodes.c.item_code == page.c.item_code))
        .order_by(page.c.item_code, item_barcodes.c.barcode)
    )


def _read_items(
    connection: Connection, condition: ColumnElement[bool] | None, *, limit: int
) -> list[Item]:
    """Items matching ``condition`` in item_code order, with their barcodes and units
    (the statement built per call: for the import's chunks, not a user's page)."""
    return _assemble(
        connection.execute(_page_query(condition, limit)).all(),
        lambda codes: connection.execute(_PAGE_UNITS, {"codes": codes}).all(),
    )


def _assemble(rows: Sequence[Any], units: Callable[[list[str]], Sequence[Any]]) -> list[Item]:
    """Items from rows of an item joined to its barcodes (in item, barcode order), with
    the units ``units`` reads for the items found.

    One pass, each row unpacked by position (the columns of :func:`_item_columns` and
    ``_BARCODE_COLUMNS``); an amount or a time is converted once per distinct value in
    the call (a page's items share most of theirs), and the objects are the same values
    the types' own conversions made, so the answer is unchanged.
    """
    found: dict[str, Item] = {}
    amounts: dict[int, Decimal] = {}
    times: dict[datetime, datetime] = {}

    def amount(value: int | None) -> Decimal | None:
        if value is None:
            return None
        converted = amounts.get(value)
        if converted is None:
            converted = amounts[value] = from_micro_units(int(value))
        return converted

    def utc(value: datetime) -> datetime:
        converted = times.get(value)
        if converted is None:
            converted = times[value] = _utc(value)
        return converted

    item: Item | None = None
    for (
        code,
        name,
        uom,
        active,
        version,
        updated_at,
        cost,
        price,
        purchase_price,
        name_en,
        category,
        lot_tracked,
        expiry_tracked,
        serial_tracked,
        shelf_life_days,
        min_remaining_days,
        unit_weight,
        weight_tolerance,
        valuation,
        archived,
        barcode,
        qty_per,
        barcode_uom,
        kind,
        barcode_version,
        barcode_updated_at,
    ) in rows:
        if item is None or item.item_code != code:
            item = found.get(code)
            if item is None:
                item = found[code] = Item(
                    item_code=code,
                    name=name,
                    uom=uom,
                    active=active,
                    version=version,
                    updated_at=utc(updated_at),
                    cost=amount(cost),
                    price=amount(price),
                    purchase_price=amount(purchase_price),
                    name_en=name_en,
                    category=category,
                    lot_tracked=lot_tracked,
                    expiry_tracked=expiry_tracked,
                    serial_tracked=serial_tracked,
                    shelf_life_days=shelf_life_days,
                    min_remaining_days=min_remaining_days,
                    unit_weight=amount(unit_weight),
                    weight_tolerance=amount(weight_tolerance),
                    valuation=valuation,
                    archived=archived,
                )
        if barcode is not None:
            item.barcodes.append(
                ItemBarcode(
                    barcode=barcode,
                    qty_per=amount(qty_per),  # type: ignore[arg-type]
                    version=barcode_version,
                    updated_at=utc(barcode_updated_at),
                    uom=barcode_uom,
                    kind=kind,
                )
            )
    if found:
        for code, uom, factor, version, updated_at in units(list(found)):
            found[code].units.append(
                ItemUnit(uom=uom, factor=factor, version=version, updated_at=utc(updated_at))
            )
    return list(found.values())


def _utc(value: Any) -> datetime:
    """SQLite hands back the stored UTC time without its offset; put it back."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
