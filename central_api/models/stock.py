"""Stock balances: what is on hand per (site, location, item, lot), as the ledgers sum it.

A projection of ``ledger_events`` kept by ingest in the push's own transaction, so a
stock query reads one row per key instead of summing the ledger.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
)

from central_api.models.base import MicroUnits, metadata
from central_api.models.ledger import site_sync_state

NO_LOT = ""
"""How "no lot" is stored in a balance key: NULL is never equal to NULL, so a key column
holding NULL would let the same untracked stock appear twice on either database."""

# Sum of ledger_events.qty per key, kept in the ingest transaction.
stock_balances = Table(
    "stock_balances",
    metadata,
    Column(
        "site_id",
        String(32),
        ForeignKey(site_sync_state.c.site_id),
        nullable=False,
    ),
    Column("location", String(64), nullable=False),
    Column("item", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "location", "item", "lot"),
    Index(None, "site_id", "item"),
)


opening_stock = Table(
    "opening_stock",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("location", String(64), nullable=False),
    Column("item", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("expiry", Date, nullable=True),
    Column("uom", String(16), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("unit_cost", MicroUnits, nullable=True),
    Column("file_sha256", String(64), nullable=False),
    Column("row", Integer, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("imported_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "location", "item", "lot"),
)
"""Opening balances (期初库存) imported, one per key (``lot`` is :data:`NO_LOT` for none),
with the file (SHA-256) and row each came from and the central event that booked it
(in base units, its cost per base unit). A key is imported once: the same row again is
skipped, a different quantity for it is refused (an adjustment corrects it)."""

# Balances at the start of each month (migration 0038), per (site, item): the sum of both
# ledgers' quantities per (location, lot) over the events that happened *before*
# ``moment`` (``occurred_at < moment``), so that stock as of a past moment is the nearest
# snapshot plus at most about a month of movements (``services.snapshots``; docs/reports.md,
# "Stock as of a moment"). Written for every (site, item) that moved in the month before
# ``moment`` (other keys keep their earlier snapshot, still right for ``moment``);
# corrected by every late event in the transaction that books it.
stock_snapshots = Table(
    "stock_snapshots",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("item", String(64), nullable=False),
    Column("moment", DateTime(timezone=True), nullable=False),
    Column("location", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    PrimaryKeyConstraint("site_id", "item", "moment", "location", "lot"),
)

# Which month starts have been snapshotted at each site (one row per site and month,
# written with the snapshots): where the next run starts.
stock_snapshot_runs = Table(
    "stock_snapshot_runs",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("moment", DateTime(timezone=True), nullable=False),
    Column("written_at", DateTime(timezone=True), nullable=False),
    Column("keys", Integer, nullable=False),
    PrimaryKeyConstraint("site_id", "moment"),
)
