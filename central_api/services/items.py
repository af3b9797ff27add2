"""The item master: items and their barcodes, each write mirrored into the change feed.

Every function that writes does so in one transaction that also appends the changes to
``change_feed`` (:func:`central_api.services.feed.feed_writer`), so a site's cache can
never miss a write or see one that was rolled back. Writes that change nothing (the same
PUT twice) append nothing, so an edge is not sent the same state again.

Rules:

* Items are never deleted: the ledgers reference them. ``deactivate_item`` keeps the
  item (and its barcodes) and marks it inactive; a PUT with ``active`` true revives it.
* A barcode identifies one item. Assigning a code that another item holds is refused
  (:class:`~central_api.errors.BarcodeTakenError`); moving it takes a delete first.
* Removing a barcode writes a tombstone, so an edge that was offline still drops it.
* Items and barcodes are for every site (``site_id`` NULL in the feed) for now.
* Every write is recorded in the audit log (:func:`central_api.services.audit.record`)
  in its own transaction, with the item's state before and after (its barcodes as
  ``{barcode: qty_per}``), whether or not it changed anything: the log says who asked.

Within one write the changes are appended item first, then barcode tombstones, then
barcode upserts, each group in key order. A page boundary may fall between them; an
edge applying pages in order still never holds a barcode of an item it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, insert, select, update

from central_api.core.db import write_transaction
from central_api.errors import BarcodeTakenError, UnknownBarcodeError, UnknownItemError
from central_api.models.items import item_barcodes, items
from central_api.services.audit import AuditContext, record
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from jxc.feed import BarcodeData, ChangeOp, FeedEntity, ItemData

MAX_ITEMS_PAGE = 1000


@dataclass(slots=True)
class ItemBarcode:
    """One barcode of an item as central stores it."""

    barcode: str
    qty_per: Decimal
    version: int
    """The feed version of this barcode's last change."""
    updated_at: datetime


@dataclass(slots=True)
class Item:
    """An item with its barcodes (in barcode order), as central stores it."""

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


@dataclass(frozen=True, slots=True)
class ItemPage:
    """One page of the item master, in item_code order."""

    items: list[Item]
    next_after: str | None
    """The item code to continue after; None when this page is the last."""


def upsert_item(
    *,
    connection: Connection,
    item: ItemData,
    barcodes: Sequence[BarcodeData] | None,
    audit: AuditContext,
    now: datetime | None = None,
    cost: Decimal | None = None,
    price: Decimal | None = None,
) -> Item:
    """Create or update ``item`` and, if ``barcodes`` is given, make them its barcode set.

    Barcodes the item has and ``barcodes`` lacks are deleted (tombstones in the feed);
    ``None`` leaves the item's barcodes as they are. Raises
    :class:`~central_api.errors.BarcodeTakenError` (nothing changed) when a barcode belongs
    to another item. ``cost`` and ``price`` are set when given and kept when None; they
    never enter the change feed (edges have no use for them). ``connection`` must not be
    inside a transaction.
    """
    code = item.item_code
    wanted: dict[str, Decimal] | None = None
    if barcodes is not None:
        wanted = {}
        for barcode in barcodes:
            if barcode.item_code != code:
                raise ValueError(f"barcode {barcode.barcode!r} is for item {barcode.item_code!r}")
            if barcode.barcode in wanted:
                raise ValueError(f"barcode {barcode.barcode!r} is given twice")
            wanted[barcode.barcode] = barcode.qty_per
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        stored = connection.execute(
            select(items.c.name, items.c.uom, items.c.active).where(items.c.item_code == code)
        ).one_or_none()
        before = None if stored is None else _audit_state(_read_one(connection, code))
        if stored is None or tuple(stored) != (item.name, item.uom, item.active):
            _write_item(connection, feed, item, exists=stored is not None, now=now)
        if wanted is not None:
            _replace_barcodes(connection, feed, item_code=code, wanted=wanted, now=now)
        prices = {
            name: value for name, value in (("cost", cost), ("price", price)) if value is not None
        }
        if prices:
            connection.execute(update(items).where(items.c.item_code == code).values(**prices))
        written = _read_one(connection, code)
        _record(
            connection,
            audit,
            "item.create" if stored is None else "item.update",
            written,
            before=before,
            now=now,
        )
        return written


def deactivate_item(
    *, connection: Connection, item_code: str, audit: AuditContext, now: datetime | None = None
) -> Item:
    """Mark the item inactive (kept, with its barcodes); a no-op if it already is."""
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        stored = connection.execute(
            select(items.c.name, items.c.uom, items.c.active).where(items.c.item_code == item_code)
        ).one_or_none()
        if stored is None:
            raise UnknownItemError(item_code)
        before = _audit_state(_read_one(connection, item_code))
        if stored.active:
            item = ItemData(item_code=item_code, name=stored.name, uom=stored.uom, active=False)
            _write_item(connection, feed, item, exists=True, now=now)
        written = _read_one(connection, item_code)
        _record(connection, audit, "item.deactivate", written, before=before, now=now)
        return written


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


def get_item(*, connection: Connection, item_code: str) -> Item:
    """The item with its barcodes; raises :class:`~central_api.errors.UnknownItemError`."""
    with read_snapshot(connection):
        return _read_one(connection, item_code)


def list_items(*, connection: Connection, after: str | None, limit: int) -> ItemPage:
    """Up to ``limit`` items after item code ``after``, in item_code order, with barcodes."""
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_ITEMS_PAGE}, got {limit}")
    condition = None if after is None else items.c.item_code > after
    with read_snapshot(connection):
        found = _read_items(connection, condition, limit=limit + 1)
    page = found[:limit]
    return ItemPage(items=page, next_after=page[-1].item_code if len(found) > limit else None)


# --- writing ------------------------------------------------------------------------


def _audit_state(item: Item) -> dict[str, Any]:
    """What the audit log keeps of an item: what a person can change, not versions."""
    return {
        "item_code": item.item_code,
        "name": item.name,
        "uom": item.uom,
        "active": item.active,
        "barcodes": {barcode.barcode: barcode.qty_per for barcode in item.barcodes},
        "cost": item.cost,
        "price": item.price,
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


def _write_item(
    connection: Connection, feed: FeedWriter, item: ItemData, *, exists: bool, now: datetime
) -> None:
    version = feed.append(
        entity=FeedEntity.ITEM,
        key=item.item_code,
        op=ChangeOp.UPSERT,
        data=item.model_dump(mode="json"),
    )
    values = {
        "name": item.name,
        "uom": item.uom,
        "active": item.active,
        "version": version,
        "updated_at": now,
    }
    if exists:
        connection.execute(
            update(items).where(items.c.item_code == item.item_code).values(**values)
        )
    else:
        connection.execute(insert(items).values(item_code=item.item_code, **values))


def _replace_barcodes(
    connection: Connection,
    feed: FeedWriter,
    *,
    item_code: str,
    wanted: dict[str, Decimal],
    now: datetime,
) -> None:
    """Make ``wanted`` (barcode -> qty_per) the item's barcode set."""
    if wanted:
        taken = connection.execute(
            select(item_barcodes.c.barcode, item_barcodes.c.item_code)
            .where(
                item_barcodes.c.barcode.in_(sorted(wanted)),
                item_barcodes.c.item_code != item_code,
            )
            .order_by(item_barcodes.c.barcode)
            .limit(1)
        ).one_or_none()
        if taken is not None:
            raise BarcodeTakenError(
                barcode=taken.barcode, owner=taken.item_code, requested_for=item_code
            )
    held: dict[str, Decimal] = {
        row.barcode: row.qty_per
        for row in connection.execute(
            select(item_barcodes.c.barcode, item_barcodes.c.qty_per).where(
                item_barcodes.c.item_code == item_code
            )
        )
    }
    for barcode in sorted(held.keys() - wanted.keys()):
        feed.append(entity=FeedEntity.BARCODE, key=barcode, op=ChangeOp.DELETE, data=None)
        connection.execute(delete(item_barcodes).where(item_barcodes.c.barcode == barcode))
    for barcode in sorted(wanted):
        qty_per = wanted[barcode]
        if held.get(barcode) == qty_per:
            continue
        data = BarcodeData(barcode=barcode, item_code=item_code, qty_per=qty_per)
        version = feed.append(
            entity=FeedEntity.BARCODE,
            key=barcode,
            op=ChangeOp.UPSERT,
            data=data.model_dump(mode="json"),
        )
        values = {"qty_per": qty_per, "version": version, "updated_at": now}
        if barcode in held:
            connection.execute(
                update(item_barcodes).where(item_barcodes.c.barcode == barcode).values(**values)
            )
        else:
            connection.execute(
                insert(item_barcodes).values(barcode=barcode, item_code=item_code, **values)
            )


# --- reading ------------------------------------------------------------------------


def _exists(connection: Connection, item_code: str) -> bool:
    found = connection.execute(
        select(items.c.item_code).where(items.c.item_code == item_code)
    ).scalar_one_or_none()
    return found is not None


def _read_one(connection: Connection, item_code: str) -> Item:
    found = _read_items(connection, items.c.item_code == item_code, limit=1)
    if not found:
        raise UnknownItemError(item_code)
    return found[0]


def _read_items(
    connection: Connection, condition: ColumnElement[bool] | None, *, limit: int
) -> list[Item]:
    """Items matching ``condition`` in item_code order, with their barcodes.

    One statement (items joined to their barcodes), so that on PostgreSQL an item and its
    barcodes come from the same snapshot.
    """
    chosen = select(items).order_by(items.c.item_code).limit(limit)
    if condition is not None:
        chosen = chosen.where(condition)
    page = chosen.subquery()
    query = (
        select(
            page,
            item_barcodes.c.barcode,
            item_barcodes.c.qty_per,
            item_barcodes.c.version.label("barcode_version"),
            item_barcodes.c.updated_at.label("barcode_updated_at"),
        )
        .select_from(page.outerjoin(item_barcodes, item_barcodes.c.item_code == page.c.item_code))
        .order_by(page.c.item_code, item_barcodes.c.barcode)
    )
    found: dict[str, Item] = {}
    for row in connection.execute(query):
        item = found.get(row.item_code)
        if item is None:
            item = found[row.item_code] = Item(
                item_code=row.item_code,
                name=row.name,
                uom=row.uom,
                active=row.active,
                version=row.version,
                updated_at=_utc(row.updated_at),
                cost=row.cost,
                price=row.price,
            )
        if row.barcode is not None:
            item.barcodes.append(
                ItemBarcode(
                    barcode=row.barcode,
                    qty_per=row.qty_per,
                    version=row.barcode_version,
                    updated_at=_utc(row.barcode_updated_at),
                )
            )
    return list(found.values())


def _utc(value: Any) -> datetime:
    """SQLite hands back the stored UTC time without its offset; put it back."""
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
