"""The edge ledger's schema, as one numbered list of migrations.

A ledger file records the last migration it went through in ``PRAGMA user_version``.
Opening a file applies the missing ones in order, each in its own ``BEGIN IMMEDIATE``
transaction together with the new version number, so a crash (or a failing step) in the
middle of one leaves the file at the version before it, whole and usable; the next open
tries again. SQLite's DDL is transactional, which is what makes this safe.

A file whose version is higher than the code knows was written by a newer jxc; it is
refused, because older code could misread tables it does not know about.

Files written before the schema was numbered carry ``user_version`` 0 with tables in them;
they are adopted once: the migrations whose tables are already there are counted as
applied (the older code always created them in the order listed here), the rest run.

To add a migration: append a :class:`Migration` with the next number; never edit or
reorder one that has shipped (a file in the field has already gone through it). A step runs
inside the migration's transaction, so it must not commit: no ``executescript`` (which
commits first), no ``VACUUM``; SQL statements or a callable using ``conn.execute``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlite_utils

Step = Callable[[sqlite3.Connection], None]


class SchemaError(Exception):
    """The ledger file's schema cannot be brought up to date by this code."""


class SchemaTooNewError(SchemaError):
    """The file was written by a newer jxc than this one."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``version`` is what the file is at once it has run."""

    version: int
    why: str
    step: Step | tuple[str, ...]

    def apply(self, conn: sqlite3.Connection) -> None:
        if callable(self.step):
            self.step(conn)
        else:
            for statement in self.step:
                conn.execute(statement)


def _events_and_outbox(conn: sqlite3.Connection) -> None:
    db = sqlite_utils.Database(conn)
    events = db.table("events")
    if events.exists():
        return
    events.create(
        {
            "seq": int,
            "event_id": str,
            "occurred_at": str,
            "kind": str,
            "item": str,
            "lot": str,
            "location": str,
            "qty": str,
            "body": str,
            "synced_at": str,
        },
        pk="seq",
        not_null={"event_id", "occurred_at", "kind", "item", "location", "qty", "body"},
    )
    events.create_index(["event_id"], unique=True)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY REFERENCES events(seq))"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, their outbox and the ledger's metadata", _events_and_outbox),
    Migration(
        2,
        "the sender lease: one agent pushes a ledger at a time",
        (
            "CREATE TABLE IF NOT EXISTS sender_lease (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " holder TEXT NOT NULL, expires_at REAL NOT NULL)",
        ),
    ),
    Migration(
        3,
        "dead letters: events central refused, out of the outbox until requeued",
        (
            "CREATE TABLE IF NOT EXISTS dead_letters (seq INTEGER PRIMARY KEY"
            " REFERENCES events(seq), status TEXT NOT NULL, detail TEXT,"
            " refused_at TEXT NOT NULL)",
        ),
    ),
    Migration(
        4,
        "labels owed for events, written with the event so a restart still prints them",
        (
            "CREATE TABLE IF NOT EXISTS label_queue (seq INTEGER PRIMARY KEY"
            " REFERENCES events(seq), printer_id TEXT NOT NULL, state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, detail TEXT, updated_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS label_queue_owed ON label_queue (printer_id, seq)"
            " WHERE state = 'pending'",
        ),
    ),
    Migration(
        5,
        "label copies: a reprint is a new copy with its own printer job id",
        ("ALTER TABLE label_queue ADD COLUMN copy INTEGER NOT NULL DEFAULT 0",),
    ),
    Migration(
        6,
        "the master-data cache (items, barcodes) and the change feed's cursor",
        (
            "CREATE TABLE IF NOT EXISTS cache_items (item_code TEXT PRIMARY KEY,"
            " name TEXT NOT NULL, uom TEXT NOT NULL, active INTEGER NOT NULL,"
            " version INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS cache_barcodes (barcode TEXT PRIMARY KEY,"
            " item_code TEXT NOT NULL, qty_per TEXT NOT NULL, version INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS sync_cursor (feed TEXT PRIMARY KEY,"
            " cursor INTEGER NOT NULL, updated_at TEXT NOT NULL)",
        ),
    ),
    Migration(
        7,
        "the schema version lives in user_version: drop ledger_meta's stale copy (always 1)",
        ("DELETE FROM ledger_meta WHERE key = 'schema_version'",),
    ),
    Migration(
        8,
        "receiving against purchase orders: open PO lines, the item fields receiving checks,"
        " barcodes' pack units, events' document line, cartons booked (SSCC/serial)",
        (
            "ALTER TABLE cache_items ADD COLUMN expiry_tracked INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE cache_items ADD COLUMN min_remaining_days INTEGER",
            "ALTER TABLE cache_items ADD COLUMN unit_weight TEXT",
            "ALTER TABLE cache_items ADD COLUMN weight_tolerance TEXT",
            "ALTER TABLE cache_barcodes ADD COLUMN uom TEXT",
            "CREATE TABLE IF NOT EXISTS cache_po_lines (po_id TEXT NOT NULL,"
            " line_no INTEGER NOT NULL, supplier TEXT NOT NULL, item_code TEXT NOT NULL,"
            " qty TEXT NOT NULL, uom TEXT NOT NULL, order_qty TEXT NOT NULL,"
            " order_uom TEXT NOT NULL, expected_date TEXT, over_tolerance TEXT NOT NULL,"
            " under_tolerance TEXT NOT NULL, version INTEGER NOT NULL,"
            " PRIMARY KEY (po_id, line_no))",
            "CREATE INDEX IF NOT EXISTS cache_po_lines_item ON cache_po_lines (item_code)",
            "ALTER TABLE events ADD COLUMN doc_id TEXT",
            "ALTER TABLE events ADD COLUMN doc_line INTEGER",
            "CREATE INDEX IF NOT EXISTS events_doc_line ON events (doc_id, doc_line)"
            " WHERE doc_id IS NOT NULL",
            "CREATE TABLE IF NOT EXISTS received_cartons (carton TEXT PRIMARY KEY,"
            " seq INTEGER NOT NULL REFERENCES events(seq))",
            # The cached items and barcodes lack the new fields: pull the whole feed again
            # (every change carries the full state, so applying it twice is harmless).
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
    Migration(
        9,
        "offline master data for stations: item units, the site's stock levels, its locations",
        (
            # Keyed by the feed's own key (``<item> <uom>``), so a tombstone removes its
            # row without parsing the key (an item code may hold a space).
            "CREATE TABLE IF NOT EXISTS cache_item_units (key TEXT PRIMARY KEY,"
            " item_code TEXT NOT NULL, uom TEXT NOT NULL, factor TEXT NOT NULL,"
            " version INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS cache_item_units_item ON cache_item_units (item_code)",
            "CREATE TABLE IF NOT EXISTS cache_item_levels (item_code TEXT PRIMARY KEY,"
            " safety_stock TEXT NOT NULL, reorder_point TEXT NOT NULL,"
            " reorder_qty TEXT NOT NULL, version INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS cache_locations (code TEXT PRIMARY KEY,"
            " parent TEXT, level TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,"
            " active INTEGER NOT NULL, version INTEGER NOT NULL)",
            # The agent skipped these entities until now while its cursor moved past
            # them: pull the whole feed again to fill the new tables.
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
    Migration(
        10,
        "picking: released pick lists from the feed, picks waiting to be packed, packed"
        " logistic units with their SSCC and label, the site's gapless SSCC serial counter",
        (
            "CREATE TABLE IF NOT EXISTS cache_pick_lists (so_id TEXT PRIMARY KEY,"
            " data TEXT NOT NULL, version INTEGER NOT NULL)",
            # One row: the last SSCC serial handed out. Moved in the transaction that
            # books the pack, so a crash gives the number back with everything else.
            "CREATE TABLE IF NOT EXISTS sscc_counter (id INTEGER PRIMARY KEY CHECK (id = 1),"
            " last_serial INTEGER NOT NULL)",
            "INSERT OR IGNORE INTO sscc_counter (id, last_serial) VALUES (1, 0)",
            "CREATE TABLE IF NOT EXISTS packs (serial INTEGER PRIMARY KEY,"
            " sscc TEXT NOT NULL UNIQUE, so_id TEXT NOT NULL, item TEXT NOT NULL,"
            " gtin TEXT, lot TEXT, expiry TEXT, count INTEGER NOT NULL, qty TEXT NOT NULL,"
            " uom TEXT NOT NULL, first_seq INTEGER NOT NULL REFERENCES events(seq),"
            " packed_at TEXT NOT NULL, printer_id TEXT, label_state TEXT NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0, detail TEXT)",
            "CREATE INDEX IF NOT EXISTS packs_owed ON packs (printer_id, label_state)",
            "CREATE TABLE IF NOT EXISTS picks (pick_id INTEGER PRIMARY KEY,"
            " so_id TEXT NOT NULL, so_version INTEGER NOT NULL, so_line INTEGER NOT NULL,"
            " item TEXT NOT NULL,"
            " lot TEXT NOT NULL, expiry TEXT, location TEXT NOT NULL, qty TEXT NOT NULL,"
            " uom TEXT NOT NULL, count INTEGER NOT NULL, gtin TEXT, swapped_from TEXT,"
            " device_id TEXT, picked_at TEXT NOT NULL,"
            " pack_serial INTEGER REFERENCES packs(serial))",
            "CREATE INDEX IF NOT EXISTS picks_so ON picks (so_id, so_line)",
            # Pick lists were skipped until now while the cursor moved past them.
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
    Migration(
        11,
        "the store's counter: a gapless per-site receipt counter, receipts and their lines",
        (
            # One row: the last receipt number handed out. Moved in the transaction that
            # books the receipt's events, so a crash gives the number back with them.
            "CREATE TABLE IF NOT EXISTS receipt_counter (id INTEGER PRIMARY KEY"
            " CHECK (id = 1), last_number INTEGER NOT NULL)",
            "INSERT OR IGNORE INTO receipt_counter (id, last_number) VALUES (1, 0)",
            # kind: 'sale' or 'refund' (refunds: the sold receipt it pays back).
            "CREATE TABLE IF NOT EXISTS receipts (number INTEGER PRIMARY KEY,"
            " code TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, refunds INTEGER"
            " REFERENCES receipts(number), payment TEXT NOT NULL, total TEXT NOT NULL,"
            " made_at TEXT NOT NULL, day TEXT NOT NULL, device_id TEXT)",
            "CREATE INDEX IF NOT EXISTS receipts_day ON receipts (day)",
            # One row per event: a receipt line sold from two lots is two rows. qty is
            # positive; refunded (on a sale's rows) is how much of it was paid back.
            "CREATE TABLE IF NOT EXISTS receipt_lines (seq INTEGER PRIMARY KEY"
            " REFERENCES events(seq), number INTEGER NOT NULL REFERENCES receipts(number),"
            " line INTEGER NOT NULL, item TEXT NOT NULL, lot TEXT, expiry TEXT,"
            " location TEXT NOT NULL, qty TEXT NOT NULL, uom TEXT NOT NULL,"
            " unit_price TEXT NOT NULL, amount TEXT NOT NULL,"
            " refunded TEXT NOT NULL DEFAULT '0', refund_of INTEGER)",
            "CREATE INDEX IF NOT EXISTS receipt_lines_number ON receipt_lines (number, line)",
            "CREATE INDEX IF NOT EXISTS events_item_location ON events (item, location, seq)",
        ),
    ),
    Migration(
        12,
        "transfers: approved transfer orders from the feed, the transfer stations' scans"
        " (kept until their side is done), and each side done here; the reference lists"
        " the edge uses (reason codes for write-offs on the spot)",
        (
            # Keyed by the feed's own key (``<list> <code>``); attrs is the entry's JSON.
            "CREATE TABLE IF NOT EXISTS cache_references (key TEXT PRIMARY KEY,"
            " list TEXT NOT NULL, code TEXT NOT NULL, name TEXT NOT NULL,"
            " name_en TEXT NOT NULL, attrs TEXT NOT NULL, active INTEGER NOT NULL,"
            " version INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS cache_transfers (transfer_id TEXT PRIMARY KEY,"
            " data TEXT NOT NULL, version INTEGER NOT NULL)",
            # One row per accepted carton; seq is the event it was booked as (at DONE).
            # direction: 'out' (this site sends) or 'in' (it receives).
            "CREATE TABLE IF NOT EXISTS transfer_scans (scan_id INTEGER PRIMARY KEY,"
            " transfer_id TEXT NOT NULL, direction TEXT NOT NULL, line_no INTEGER NOT NULL,"
            " item TEXT NOT NULL, lot TEXT, expiry TEXT, location TEXT NOT NULL,"
            " qty TEXT NOT NULL, uom TEXT NOT NULL, device_id TEXT, scanned_at TEXT NOT NULL,"
            " seq INTEGER REFERENCES events(seq))",
            "CREATE INDEX IF NOT EXISTS transfer_scans_transfer ON transfer_scans"
            " (transfer_id, direction)",
            # A side ended here (DONE): its events are booked, the last one marked.
            "CREATE TABLE IF NOT EXISTS transfers_done (transfer_id TEXT NOT NULL,"
            " direction TEXT NOT NULL, last_seq INTEGER NOT NULL REFERENCES events(seq),"
            " done_at TEXT NOT NULL, PRIMARY KEY (transfer_id, direction))",
            # Transfers were skipped until now while the cursor moved past them.
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
    Migration(
        13,
        "short picks owed to central: each line a DONE found picked short, until sent",
        (
            # short_id: a UUID, central's key for it (a resend is the same report);
            # sent_at: NULL until central acknowledged it.
            "CREATE TABLE IF NOT EXISTS pick_shorts (short_id TEXT PRIMARY KEY,"
            " so_id TEXT NOT NULL, so_line INTEGER NOT NULL, item TEXT NOT NULL,"
            " wanted TEXT NOT NULL, picked TEXT NOT NULL, uom TEXT NOT NULL,"
            " device_id TEXT, reported_at TEXT NOT NULL, sent_at TEXT)",
            "CREATE INDEX IF NOT EXISTS pick_shorts_unsent ON pick_shorts (sent_at)",
        ),
    ),
    Migration(
        14,
        "counts: open stock count sessions from the feed, and the count entries made here"
        " (kept, with central's verdict once uploaded)",
        (
            "CREATE TABLE IF NOT EXISTS cache_counts (count_id TEXT PRIMARY KEY,"
            " data TEXT NOT NULL, version INTEGER NOT NULL)",
            # One row per entry, append-only; the latest of a key is its count (last wins).
            # uploaded_at and verdict are set when central has answered for it.
            "CREATE TABLE IF NOT EXISTS count_entries (entry_no INTEGER PRIMARY KEY,"
            " entry_id TEXT NOT NULL UNIQUE, count_id TEXT NOT NULL, location TEXT NOT NULL,"
            " item TEXT NOT NULL, lot TEXT, qty TEXT NOT NULL, system_qty TEXT NOT NULL,"
            " uom TEXT NOT NULL, counted_by TEXT NOT NULL, counted_at TEXT NOT NULL,"
            " device_id TEXT, uploaded_at TEXT, verdict TEXT, reason TEXT)",
            "CREATE INDEX IF NOT EXISTS count_entries_count ON count_entries"
            " (count_id, location, item, lot)",
            "CREATE INDEX IF NOT EXISTS count_entries_unsent ON count_entries (uploaded_at)",
            # Count sessions were skipped until now while the cursor moved past them.
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
    Migration(
        15,
        "customer returns: authorised returns (RMAs) of the site from the feed, which the"
        " returns station receives offline",
        (
            "CREATE TABLE IF NOT EXISTS cache_returns (return_id TEXT PRIMARY KEY,"
            " data TEXT NOT NULL, version INTEGER NOT NULL)",
            # Returns were skipped until now while the cursor moved past them.
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
    Migration(
        16,
        "categories: each item's category and the category tree with its expiry alert bands,"
        " so the status page's expiry alerts use the item's category bands as central's do",
        (
            "ALTER TABLE cache_items ADD COLUMN category TEXT",
            # expiry_days: "15,30,60", NULL when the category inherits its parent's.
            "CREATE TABLE IF NOT EXISTS cache_categories (code TEXT PRIMARY KEY,"
            " parent TEXT, expiry_days TEXT, version INTEGER NOT NULL)",
            # Categories were skipped until now, and items were cached without theirs.
            "DELETE FROM sync_cursor WHERE feed = 'master-data'",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def version(conn: sqlite3.Connection) -> int:
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    return int(found)


def _legacy_version(conn: sqlite3.Connection, name: str) -> int:
    """How far an unnumbered file (written before migrations) already is.

    The code of that time created the ledger's tables on every open in the order of
    migrations 1-5, so what it left is a prefix of them; the catalog's tables (6) may be
    there or not, and migration 6 creates them only where missing. A file with tables but
    no ``events`` is not a ledger at all and is refused rather than written into.
    """
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    if "events" not in tables:
        if tables:  # every ledger began with its events table: this file is something else
            raise SchemaError(
                f"{name} holds tables ({', '.join(sorted(tables)[:5])}) but is not a jxc "
                "ledger; check [ledger] path in the site file. Nothing was changed"
            )
        return 0
    found = 1
    for number, table in ((2, "sender_lease"), (3, "dead_letters"), (4, "label_queue")):
        if table not in tables:
            return found
        found = number
    columns = {row[1] for row in conn.execute("PRAGMA table_info(label_queue)")}
    return 5 if "copy" in columns else 4


def migrate(
    conn: sqlite3.Connection,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    target: int | None = None,
    name: str = "the ledger",
) -> int:
    """Bring the file on ``conn`` (autocommit mode) up to ``target``; returns its version.

    Each migration commits on its own, so a failure leaves the file at the last good
    version and raises; nothing of the failing migration is kept.
    """
    known = migrations[-1].version if migrations else 0
    target = known if target is None else target
    if [m.version for m in migrations] != list(range(1, known + 1)):
        raise SchemaError("migrations must be numbered 1, 2, 3, ... without gaps")
    while True:
        conn.execute("BEGIN IMMEDIATE")  # read the version under the write lock
        try:
            current = version(conn)
            if current == 0 and (adopted := _legacy_version(conn, name)):
                conn.execute(f"PRAGMA user_version = {adopted}")  # its own step, kept
                conn.execute("COMMIT")
                continue
            if current > known:
                raise SchemaTooNewError(
                    f"{name} is at schema version {current}, but this jxc knows only up to "
                    f"{known}: the file was written by a newer jxc. Run that newer jxc (or "
                    "upgrade this one); the file was left untouched"
                )
            if current >= target:
                conn.execute("COMMIT")
                return current
            step = migrations[current]
            try:
                step.apply(conn)
            except Exception as exc:
                raise SchemaError(
                    f"{name}: migration {step.version} ({step.why}) failed: {exc}; the file "
                    f"stays at schema version {current}, with nothing of this migration in it"
                ) from exc
            conn.execute(f"PRAGMA user_version = {step.version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
