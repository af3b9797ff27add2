"""The item master: items and the barcodes that identify them.

Every write to these tables also appends its change to ``change_feed`` in the same
transaction (see ``central_api.services.feed``); ``version`` on a row is the feed version
of its last change.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    false,
)

from central_api.models.base import MicroUnits, metadata

# An item; deleted only while nothing references it, else archived (see services.items).
items = Table(
    "items",
    metadata,
    Column("item_code", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Financial: never in the change feed (edges have no use for them) and absent from
    # every answer to a role without the financial field group. NULL means not set.
    Column("cost", MicroUnits, nullable=True),
    Column("price", MicroUnits, nullable=True),
    # Master data of issue 13 (migration 0009); see central_api.services.items.
    Column("purchase_price", MicroUnits, nullable=True),
    Column("name_en", String(200), nullable=False, server_default=""),
    Column("category_code", String(32), ForeignKey("categories.code"), nullable=True),
    Column("lot_tracked", Boolean, nullable=False, server_default=false()),
    Column("expiry_tracked", Boolean, nullable=False, server_default=false()),
    Column("serial_tracked", Boolean, nullable=False, server_default=false()),
    Column("shelf_life_days", Integer, nullable=True),
    Column("min_remaining_days", Integer, nullable=True),
    Column("unit_weight", MicroUnits, nullable=True),
    Column("weight_tolerance", MicroUnits, nullable=True),
    Column("valuation", String(16), nullable=False, server_default="moving_average"),
    Column("archived", Boolean, nullable=False, server_default=false()),
    Index(None, "category_code"),
)

# A code a scanner reads, and how many of the item's unit one scan of it counts.
item_barcodes = Table(
    "item_barcodes",
    metadata,
    Column("barcode", String(64), primary_key=True),
    Column("item_code", String(64), ForeignKey(items.c.item_code), nullable=False),
    Column("qty_per", MicroUnits, nullable=False),
    # The pack unit one scan means (one of the item's units); NULL: the base unit.
    Column("uom", String(16), nullable=True),
    Column("kind", String(8), nullable=False, server_default="internal"),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "item_code"),
)
