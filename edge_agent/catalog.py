"""The site's copy of central's master data, kept current from the change feed.

The cache lives in the ledger's SQLite file so that a page of changes and the cursor
after it are stored in one transaction: a crash between the two cannot skip a change
(the page is simply fetched and applied again; applying it twice is harmless because
every change carries the full new state, or a tombstone).

Cached: items, barcodes, open PO lines, and (ledger migration 9) item units, the site's
stock levels per item and its location tree, so a station converts a carton to base
units, warns below the reorder point and checks a location while central is away; and
(ledger migration 10) the site's released pick lists, which the picking station works from
offline (a tombstone, the order cancelled or closed, removes one); transfer orders
(migration 12), open count sessions (14) and authorised customer returns (15), each kept
whole as its JSON.

**Unknown entity kinds are skipped and counted** (:func:`read_page`), never a reason to
refuse the page: central may add a kind (pick lists, transfer orders...) before every edge
is upgraded, and an edge keeps pulling what it knows. The cursor moves past the skipped
changes; the ledger migration of the agent version that learns a kind resets the cursor,
so it pulls the whole feed again and fills the new table. Agents before this rule
(before ledger migration 9) refuse a page with a kind they do not know and retry it after
a backoff: their cursor stays, nothing is lost, but their master data stands still until
they are upgraded (``docs/master-data.md``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

import httpx
from pydantic import ValidationError

from edge_agent.backoff import Backoff, retry_after_s
from edge_agent.ledger import Ledger
from edge_agent.transport import describe_transport_error
from jxc.contract import LedgerEvent
from jxc.feed import (
    Change,
    ChangeOp,
    ChangePage,
    CountData,
    FeedEntity,
    PickListData,
    ReferenceData,
    ReturnData,
    TransferData,
)
from jxc.paths import SYNC_CHANGES

log = logging.getLogger("edge_agent.catalog")

CHANGES_PATH = SYNC_CHANGES
FEED = "master-data"


@dataclass(frozen=True, slots=True)
class KnownBarcode:
    """What a scanned code means at this site."""

    barcode: str
    item_code: str
    qty_per: Decimal
    uom: str
    active: bool
    pack_uom: str | None = None
    """The pack unit one scan means (a case of ``qty_per``), if the barcode names one."""


@dataclass(frozen=True, slots=True)
class CachedItem:
    """The fields of an item that receiving checks a carton against."""

    item_code: str
    uom: str
    active: bool
    expiry_tracked: bool = False
    min_remaining_days: int | None = None
    unit_weight: Decimal | None = None
    """kg per base unit"""
    weight_tolerance: Decimal | None = None
    """percent"""


@dataclass(frozen=True, slots=True)
class OpenLine:
    """An open PO line of the site, in the item's base unit, and what this edge received."""

    po_id: str
    line_no: int
    supplier: str
    item_code: str
    qty: Decimal
    uom: str
    over_tolerance: Decimal
    under_tolerance: Decimal
    expected_date: date | None
    received: Decimal

    @property
    def remaining(self) -> Decimal:
        return max(self.qty - self.received, Decimal(0))

    @property
    def ceiling(self) -> Decimal:
        """The most that may be received in all without an exception at central."""
        return self.qty * (1 + self.over_tolerance / 100)

    @property
    def floor(self) -> Decimal:
        """The least that completes the line: its quantity less ``under_tolerance``
        percent, the rule by which central moves a PO to ``received`` by itself."""
        return self.qty * (1 - self.under_tolerance / 100)

    @property
    def state(self) -> LineState:
        """Where the line stands at this edge (see :class:`LineState`)."""
        if self.received > self.ceiling:
            return LineState.OVER
        if self.received >= self.qty:
            return LineState.COMPLETE
        if self.received >= self.floor and self.received > 0:
            return LineState.SHORT_WITHIN_TOLERANCE
        return LineState.OPEN


class LineState(StrEnum):
    """A PO line's receiving at the edge, by its two tolerances.

    ``short_within_tolerance``: less than ordered but no less than ``floor``; the supplier
    delivered "complete enough", central counts the line as received, and the station
    stops preferring it for the next carton (one of a line still short beyond tolerance
    is more likely). It stays receivable: a late carton of the rest still books against
    it, as at central, until a person closes the PO.
    """

    OPEN = "open"
    SHORT_WITHIN_TOLERANCE = "short_within_tolerance"
    COMPLETE = "complete"
    OVER = "over"


@dataclass(frozen=True, slots=True)
class ReceivedToday:
    seq: int
    occurred_at: datetime
    item: str
    qty: Decimal
    uom: str
    lot: str | None
    expiry: date | None
    location: str
    po_id: str | None
    line_no: int | None
    ref: str | None


KNOWN_ENTITIES = frozenset(entity.value for entity in FeedEntity)


def read_page(content: bytes) -> tuple[ChangePage, int]:
    """A page of the feed, without the changes of entity kinds this agent does not know;
    and how many were left out.

    Only the kind decides: a change of a known kind that does not validate still fails
    the page (its data would be cached wrongly), and so does a page that is not one.
    """
    raw = json.loads(content)
    skipped = 0
    if isinstance(raw, dict) and isinstance(raw.get("changes"), list):
        known = [
            change
            for change in raw["changes"]
            if not (
                isinstance(change, dict)
                and isinstance(change.get("entity"), str)
                and change["entity"] not in KNOWN_ENTITIES
            )
        ]
        skipped = len(raw["changes"]) - len(known)
        raw["changes"] = known
    return ChangePage.model_validate(raw), skipped


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


class Catalog:
    """Read and update the cached items and barcodes.

    Its tables are the ledger's (migration 6 in :mod:`edge_agent.migrations`).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def cursor(self) -> int:
        with self.ledger.reading() as conn:
            row = conn.execute("SELECT cursor FROM sync_cursor WHERE feed = ?", (FEED,)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, page: ChangePage) -> int:
        """Apply one page and store its cursor, atomically. Returns changes applied."""
        with self.ledger.transaction() as conn:
            for change in page.changes:
                if change.entity is FeedEntity.ITEM:
                    if change.op is ChangeOp.DELETE:
                        conn.execute("DELETE FROM cache_items WHERE item_code = ?", (change.key,))
                        continue
                    item = change.item()
                    conn.execute(
                        "INSERT INTO cache_items (item_code, name, uom, active, version,"
                        " expiry_tracked, min_remaining_days, unit_weight, weight_tolerance,"
                        " category)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_code)"
                        " DO UPDATE SET name = excluded.name, uom = excluded.uom,"
                        " active = excluded.active, version = excluded.version,"
                        " expiry_tracked = excluded.expiry_tracked,"
                        " min_remaining_days = excluded.min_remaining_days,"
                        " unit_weight = excluded.unit_weight,"
                        " weight_tolerance = excluded.weight_tolerance,"
                        " category = excluded.category",
                        (
                            item.item_code,
                            item.name,
                            item.uom,
                            item.active,
                            change.version,
                            item.expiry_tracked,
                            item.min_remaining_days,
                            _text(item.unit_weight),
                            _text(item.weight_tolerance),
                            item.category,
                        ),
                    )
                elif change.entity is FeedEntity.BARCODE:
                    if change.op is ChangeOp.DELETE:
                        conn.execute("DELETE FROM cache_barcodes WHERE barcode = ?", (change.key,))
                        continue
                    code = change.barcode()
                    conn.execute(
                        "INSERT INTO cache_barcodes (barcode, item_code, qty_per, version, uom)"
                        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (barcode)"
                        " DO UPDATE SET item_code = excluded.item_code,"
                        " qty_per = excluded.qty_per, version = excluded.version,"
                        " uom = excluded.uom",
                        (
                            code.barcode,
                            code.item_code,
                            format(code.qty_per, "f"),
                            change.version,
                            code.uom,
                        ),
                    )
                elif change.entity is FeedEntity.PO_LINE:
                    self._apply_po_line(conn, change)
                elif change.entity is FeedEntity.PICK_LIST:
                    if change.op is ChangeOp.DELETE:
                        conn.execute("DELETE FROM cache_pick_lists WHERE so_id = ?", (change.key,))
                        continue
                    picks = change.pick_list()
                    conn.execute(
                        "INSERT INTO cache_pick_lists (so_id, data, version) VALUES (?, ?, ?)"
                        " ON CONFLICT (so_id) DO UPDATE SET data = excluded.data,"
                        " version = excluded.version",
                        (picks.so_id, picks.model_dump_json(), change.version),
                    )
                elif change.entity in _DOCUMENT_TABLES:
                    _apply_document(conn, change)
                elif change.entity in _OFFLINE_TABLES:
                    _apply_offline(conn, change)
            conn.execute(
                "INSERT INTO sync_cursor VALUES (?, ?, ?) ON CONFLICT (feed) DO UPDATE"
                " SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                (FEED, page.next_cursor, datetime.now(UTC).isoformat()),
            )
        return len(page.changes)

    @staticmethod
    def _apply_po_line(conn: sqlite3.Connection, change: Change) -> None:
        """Store an open line, or forget a tombstoned one (cancelled or closed PO).

        A tombstone removes the line outright: the station must book nothing more against
        it, and what was received stays in the events, which keep their document line.
        """
        if change.op is ChangeOp.DELETE:
            po_id, _, line_no = change.key.rpartition(" ")
            conn.execute(
                "DELETE FROM cache_po_lines WHERE po_id = ? AND line_no = ?",
                (po_id, int(line_no) if line_no.isdigit() else -1),
            )
            return
        line = change.po_line()
        conn.execute(
            "INSERT INTO cache_po_lines (po_id, line_no, supplier, item_code, qty, uom,"
            " order_qty, order_uom, expected_date, over_tolerance, under_tolerance, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (po_id, line_no) DO UPDATE"
            " SET supplier = excluded.supplier, item_code = excluded.item_code,"
            " qty = excluded.qty, uom = excluded.uom, order_qty = excluded.order_qty,"
            " order_uom = excluded.order_uom, expected_date = excluded.expected_date,"
            " over_tolerance = excluded.over_tolerance,"
            " under_tolerance = excluded.under_tolerance, version = excluded.version",
            (
                line.po_id,
                line.line_no,
                line.supplier,
                line.item_code,
                format(line.qty, "f"),
                line.uom,
                format(line.order_qty, "f"),
                line.order_uom,
                line.expected_date.isoformat() if line.expected_date else None,
                format(line.over_tolerance, "f"),
                format(line.under_tolerance, "f"),
                change.version,
            ),
        )

    def pick_list(self, so_id: str) -> PickListData | None:
        """A released pick list of the site, as the feed last said."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT data FROM cache_pick_lists WHERE so_id = ?", (so_id,)
            ).fetchone()
        return None if row is None else PickListData.model_validate_json(row[0])

    def pick_lists(self) -> list[PickListData]:
        """Every released pick list of the site, by order id."""
        with self.ledger.reading() as conn:
            rows = conn.execute("SELECT data FROM cache_pick_lists ORDER BY so_id").fetchall()
        return [PickListData.model_validate_json(row[0]) for row in rows]

    def transfer(self, transfer_id: str) -> TransferData | None:
        """An approved transfer order of which this site is an end, as the feed last said."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT data FROM cache_transfers WHERE transfer_id = ?", (transfer_id,)
            ).fetchone()
        return None if row is None else TransferData.model_validate_json(row[0])

    def transfers(self) -> list[TransferData]:
        """Every approved transfer order of which this site is an end, by id."""
        with self.ledger.reading() as conn:
            rows = conn.execute("SELECT data FROM cache_transfers ORDER BY transfer_id").fetchall()
        return [TransferData.model_validate_json(row[0]) for row in rows]

    def count_session(self, count_id: str) -> CountData | None:
        """An open stock count session of the site, as the feed last said."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT data FROM cache_counts WHERE count_id = ?", (count_id,)
            ).fetchone()
        return None if row is None else CountData.model_validate_json(row[0])

    def customer_return(self, return_id: str) -> ReturnData | None:
        """An authorised customer return (RMA) of the site, as the feed last said."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT data FROM cache_returns WHERE return_id = ?", (return_id,)
            ).fetchone()
        return None if row is None else ReturnData.model_validate_json(row[0])

    def customer_returns(self) -> list[ReturnData]:
        """Every authorised customer return of the site, by id."""
        with self.ledger.reading() as conn:
            rows = conn.execute("SELECT data FROM cache_returns ORDER BY return_id").fetchall()
        return [ReturnData.model_validate_json(row[0]) for row in rows]

    def count_sessions(self) -> list[CountData]:
        """Every open stock count session of the site, by id."""
        with self.ledger.reading() as conn:
            rows = conn.execute("SELECT data FROM cache_counts ORDER BY count_id").fetchall()
        return [CountData.model_validate_json(row[0]) for row in rows]

    def references(self, list_name: str) -> list[ReferenceData]:
        """The active entries of a reference list (reason codes...), as the feed last said."""
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT code, name, name_en, attrs FROM cache_references"
                " WHERE list = ? AND active = 1 ORDER BY code",
                (list_name,),
            ).fetchall()
        return [
            ReferenceData(
                list=list_name, code=r[0], name=r[1], name_en=r[2], attrs=json.loads(r[3])
            )
            for r in rows
        ]

    def units(self, item_code: str) -> dict[str, Decimal]:
        """The item's units other than its base unit: how many base units one makes."""
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT uom, factor FROM cache_item_units WHERE item_code = ? ORDER BY uom",
                (item_code,),
            ).fetchall()
        return {uom: Decimal(factor) for uom, factor in rows}

    def levels(self, item_code: str) -> ItemLevels | None:
        """The item's safety stock and reorder levels at this site, if central set them."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT safety_stock, reorder_point, reorder_qty FROM cache_item_levels"
                " WHERE item_code = ?",
                (item_code,),
            ).fetchone()
        if row is None:
            return None
        return ItemLevels(item_code, Decimal(row[0]), Decimal(row[1]), Decimal(row[2]))

    def location(self, code: str) -> CachedLocation | None:
        """A location of this site, as central's tree last said."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT code, parent, level, kind, name, active FROM cache_locations"
                " WHERE code = ?",
                (code,),
            ).fetchone()
        if row is None:
            return None
        return CachedLocation(row[0], row[1], row[2], row[3], row[4], bool(row[5]))

    def item(self, item_code: str) -> CachedItem | None:
        """What receiving checks about an item, as the feed last said."""
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT item_code, uom, active, expiry_tracked, min_remaining_days,"
                " unit_weight, weight_tolerance FROM cache_items WHERE item_code = ?",
                (item_code,),
            ).fetchone()
        if row is None:
            return None
        return CachedItem(
            item_code=row[0],
            uom=row[1],
            active=bool(row[2]),
            expiry_tracked=bool(row[3]),
            min_remaining_days=row[4],
            unit_weight=_decimal(row[5]),
            weight_tolerance=_decimal(row[6]),
        )

    def open_lines(
        self, item_code: str | None = None, supplier: str | None = None
    ) -> list[OpenLine]:
        """Open PO lines (of ``item_code``, of ``supplier``), with what this edge has
        received against each: every receipt event naming the line, synced or not, so an
        edge offline for a day does not receive a line twice over."""
        sql = (
            "SELECT l.po_id, l.line_no, l.supplier, l.item_code, l.qty, l.uom,"
            " l.over_tolerance, l.under_tolerance, l.expected_date,"
            " (SELECT group_concat(e.qty, ' ') FROM events e"
            "  WHERE e.doc_id = l.po_id AND e.doc_line = l.line_no AND e.kind = 'receipt')"
            " FROM cache_po_lines l WHERE (:item IS NULL OR l.item_code = :item)"
            " AND (:supplier IS NULL OR l.supplier = :supplier)"
            " ORDER BY l.expected_date IS NULL, l.expected_date, l.po_id, l.line_no"
        )
        params = {"item": item_code, "supplier": supplier}
        with self.ledger.reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            OpenLine(
                po_id=row[0],
                line_no=int(row[1]),
                supplier=row[2],
                item_code=row[3],
                qty=Decimal(row[4]),
                uom=row[5],
                over_tolerance=Decimal(row[6]),
                under_tolerance=Decimal(row[7]),
                expected_date=date.fromisoformat(row[8]) if row[8] else None,
                # Summed as Decimals, never as SQLite floats.
                received=sum((Decimal(q) for q in (row[9] or "").split()), Decimal(0)),
            )
            for row in rows
        ]

    def received_on(self, day: date) -> list[ReceivedToday]:
        """Receipts booked at this edge on ``day`` (UTC), newest first."""
        start = datetime.combine(day, time.min, tzinfo=UTC)
        end = start + timedelta(days=1)
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT body FROM events WHERE kind = 'receipt' AND occurred_at >= ?"
                " AND occurred_at < ? ORDER BY seq DESC",
                (start.isoformat(), end.isoformat()),
            ).fetchall()
        out = []
        for (body,) in rows:
            event = LedgerEvent.model_validate_json(body)
            out.append(
                ReceivedToday(
                    seq=event.seq,
                    occurred_at=event.occurred_at,
                    item=event.item,
                    qty=event.qty,
                    uom=event.uom,
                    lot=event.lot,
                    expiry=event.expiry,
                    location=event.location,
                    po_id=event.doc_id,
                    line_no=event.doc_line,
                    ref=event.ref,
                )
            )
        return out

    def quarantined_recently(
        self, location: str, *, limit: int = 50, window: int = 5000
    ) -> list[LedgerEvent]:
        """The latest receipts booked into quarantine ``location`` with a reason, newest first.

        The station's list of quarantined cartons is what the operator reads on the status
        page; it must survive a restart of the agent (a power cut at the dock), so it is
        rebuilt from the ledger, where each such receipt carries its reason in ``ref``. Only
        the last ``window`` events are looked at, so a start never scans a long ledger.
        """
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT body FROM events WHERE kind = 'receipt' AND location = ?"
                " AND seq > (SELECT COALESCE(MAX(seq), 0) - ? FROM events)"
                " ORDER BY seq DESC",
                (location, window),
            ).fetchall()
        found = []
        for (body,) in rows:
            event = LedgerEvent.model_validate_json(body)
            if event.ref and event.ref.startswith("quarantine "):
                found.append(event)
                if len(found) == limit:
                    break
        return found

    def lookup(self, *codes: str | None) -> KnownBarcode | None:
        """The first of ``codes`` the site knows, trying GTIN-14 and GTIN-13 spellings."""
        candidates: list[str] = []
        for code in codes:
            if not code:
                continue
            candidates.append(code)
            if len(code) == 14 and code.startswith("0") and code.isdigit():
                candidates.append(code[1:])  # a GTIN-13 in a GTIN-14 field
            elif len(code) == 13 and code.isdigit():
                candidates.append("0" + code)
        with self.ledger.reading() as conn:
            for candidate in candidates:
                row = conn.execute(
                    "SELECT b.barcode, b.item_code, b.qty_per, i.uom, i.active, b.uom"
                    " FROM cache_barcodes b JOIN cache_items i ON i.item_code = b.item_code"
                    " WHERE b.barcode = ?",
                    (candidate,),
                ).fetchone()
                if row:
                    return KnownBarcode(
                        row[0], row[1], Decimal(row[2]), row[3], bool(row[4]), row[5]
                    )
        return None

    def counts(self) -> dict[str, int]:
        with self.ledger.reading() as conn:
            (items,) = conn.execute("SELECT COUNT(*) FROM cache_items").fetchone()
            (codes,) = conn.execute("SELECT COUNT(*) FROM cache_barcodes").fetchone()
            (lines,) = conn.execute("SELECT COUNT(*) FROM cache_po_lines").fetchone()
            offline = {
                name: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608 (our own table names)
                for name, table in _COUNTED.items()
            }
        return {"items": int(items), "barcodes": int(codes), "po_lines": int(lines), **offline}


@dataclass(frozen=True, slots=True)
class ItemLevels:
    """An item's stock levels at this site, in its base unit."""

    item_code: str
    safety_stock: Decimal
    reorder_point: Decimal
    reorder_qty: Decimal


@dataclass(frozen=True, slots=True)
class CachedLocation:
    code: str
    parent: str | None
    level: str
    kind: str
    name: str
    active: bool


_COUNTED: dict[str, str] = {
    "item_units": "cache_item_units",
    "item_levels": "cache_item_levels",
    "locations": "cache_locations",
    "pick_lists": "cache_pick_lists",
    "transfers": "cache_transfers",
    "count_sessions": "cache_counts",
    "customer_returns": "cache_returns",
    "references": "cache_references",
    "categories": "cache_categories",
}

_DOCUMENT_TABLES: dict[FeedEntity, tuple[str, str]] = {
    FeedEntity.TRANSFER: ("cache_transfers", "transfer_id"),
    FeedEntity.COUNT: ("cache_counts", "count_id"),
    FeedEntity.CUSTOMER_RETURN: ("cache_returns", "return_id"),
}
"""The documents kept whole as their JSON (table, key column), each with its version."""


def _apply_document(conn: sqlite3.Connection, change: Change) -> None:
    """Store a document's full state, or forget it at its tombstone."""
    table, column = _DOCUMENT_TABLES[change.entity]
    if change.op is ChangeOp.DELETE:
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (change.key,))  # noqa: S608 (our own names)
        return
    document: TransferData | CountData | ReturnData
    if change.entity is FeedEntity.TRANSFER:
        document = change.transfer()
    elif change.entity is FeedEntity.COUNT:
        document = change.count()
    else:
        document = change.customer_return()
    conn.execute(
        f"INSERT INTO {table} ({column}, data, version) VALUES (?, ?, ?)"  # noqa: S608 (our own names)
        f" ON CONFLICT ({column}) DO UPDATE SET data = excluded.data, version = excluded.version",
        (change.key, document.model_dump_json(), change.version),
    )


_OFFLINE_TABLES: dict[FeedEntity, tuple[str, str]] = {
    FeedEntity.CATEGORY: ("cache_categories", "code"),
    FeedEntity.REFERENCE: ("cache_references", "key"),
    FeedEntity.ITEM_UNIT: ("cache_item_units", "key"),
    FeedEntity.ITEM_SITE: ("cache_item_levels", "item_code"),
    FeedEntity.LOCATION: ("cache_locations", "code"),
}
"""Each offline entity's table and the column its feed key is stored in."""


def _apply_offline(conn: sqlite3.Connection, change: Change) -> None:
    """Store a category, a unit, a level or a location of the site, or forget a
    tombstoned one."""
    table, key_column = _OFFLINE_TABLES[change.entity]
    if change.op is ChangeOp.DELETE:
        conn.execute(f"DELETE FROM {table} WHERE {key_column} = ?", (change.key,))  # noqa: S608
        return
    row: dict[str, Any]
    if change.entity is FeedEntity.CATEGORY:
        category = change.category()
        days = category.expiry_days
        row = {
            "code": change.key,
            "parent": category.parent,
            "expiry_days": None if days is None else ",".join(str(day) for day in days),
        }
    elif change.entity is FeedEntity.REFERENCE:
        entry = change.reference()
        row = {
            "key": change.key,
            "list": entry.list,
            "code": entry.code,
            "name": entry.name,
            "name_en": entry.name_en,
            "attrs": json.dumps(entry.attrs, ensure_ascii=False, sort_keys=True),
            "active": entry.active,
        }
    elif change.entity is FeedEntity.ITEM_UNIT:
        unit = change.item_unit()
        row = {
            "key": change.key,
            "item_code": unit.item_code,
            "uom": unit.uom,
            "factor": format(unit.factor, "f"),
        }
    elif change.entity is FeedEntity.ITEM_SITE:
        levels = change.item_site()
        row = {
            "item_code": change.key,
            "safety_stock": format(levels.safety_stock, "f"),
            "reorder_point": format(levels.reorder_point, "f"),
            "reorder_qty": format(levels.reorder_qty, "f"),
        }
    else:
        location = change.location()
        row = {
            "code": change.key,
            "parent": location.parent,
            "level": location.level,
            "kind": location.kind,
            "name": location.name,
            "active": location.active,
        }
    row["version"] = change.version
    columns = ", ".join(row)
    updates = ", ".join(f"{name} = excluded.{name}" for name in row if name != key_column)
    conn.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})"  # noqa: S608
        f" ON CONFLICT ({key_column}) DO UPDATE SET {updates}",
        tuple(row.values()),
    )


class Puller:
    """Fetches the site's feed page by page; a bounded number of pages per run."""

    def __init__(
        self,
        catalog: Catalog,
        client: httpx.Client,
        *,
        site_id: str,
        page_size: int = 500,
        max_pages_per_run: int = 20,
        max_backoff_s: float = 60.0,
    ) -> None:
        self.catalog = catalog
        self.client = client
        self.site_id = site_id
        self.page_size = page_size
        self.max_pages_per_run = max_pages_per_run
        self.backoff = Backoff(max_s=max_backoff_s)
        self.last_error: str | None = None
        self.last_success_at: datetime | None = None
        self.applied = 0
        self.skipped_unknown = 0
        """Changes of entity kinds this agent does not know, skipped (see the module doc)."""
        self._run_lock = threading.Lock()

    def run(self) -> None:
        if not self.backoff.ready() or not self._run_lock.acquire(blocking=False):
            return
        try:
            for _ in range(self.max_pages_per_run):
                if not self.pull_once():
                    break
        finally:
            self._run_lock.release()

    def pull_once(self) -> bool:
        """Fetch and apply one page. True if more is waiting."""
        cursor = self.catalog.cursor()
        try:
            response = self.client.get(
                CHANGES_PATH,
                params={"site_id": self.site_id, "cursor": cursor, "limit": self.page_size},
            )
            response.raise_for_status()
            page, skipped = read_page(response.content)
        except httpx.HTTPStatusError as exc:
            busy = exc.response.status_code in (429, 503)
            wait = retry_after_s(exc.response.headers.get("retry-after")) if busy else None
            self._failed(f"{exc.__class__.__name__}: {str(exc)[:300]}", at_least_s=wait)
            return False
        except httpx.HTTPError as exc:
            self._failed(describe_transport_error(exc)[:400])
            return False
        except ValueError as exc:  # ValidationError, bad JSON included
            self._failed(f"{exc.__class__.__name__}: {str(exc)[:300]}")
            return False
        if page.site_id != self.site_id or page.next_cursor < cursor:
            self._failed(f"central sent a page for {page.site_id} ending at {page.next_cursor}")
            return False
        try:
            self.applied += self.catalog.apply(page)
        except ValidationError as exc:
            # Nothing of the page was kept; it will be fetched again after the backoff, and
            # the status page shows why the site's master data is not moving.
            self._failed(f"central sent a change this agent cannot read: {exc}")
            return False
        if skipped:
            self.skipped_unknown += skipped
            log.info(
                "changes of unknown kinds skipped",
                extra={"site": self.site_id, "skipped": skipped, "cursor": page.next_cursor},
            )
        self.backoff.succeeded()
        self.last_error = None
        self.last_success_at = datetime.now(UTC)
        if page.changes:
            log.info(
                "master data pulled",
                extra={
                    "site": self.site_id,
                    "changes": len(page.changes),
                    "cursor": page.next_cursor,
                },
            )
        return page.has_more

    def _failed(self, reason: str, *, at_least_s: float | None = None) -> None:
        self.last_error = reason
        delay = self.backoff.failed(at_least_s=at_least_s)
        log.warning(
            "pull failed",
            extra={"site": self.site_id, "reason": reason, "retry_in_s": round(delay, 3)},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.catalog.cursor(),
            "applied": self.applied,
            "skipped_unknown": self.skipped_unknown,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "consecutive_failures": self.backoff.failures,
            "cached": self.catalog.counts(),
        }
