"""The item master: items and the barcodes that identify them.

Every write to these tables also appends its change to ``change_feed`` in the same
transaction (see ``central_api.services.feed``); ``version`` on a row is the feed version
of its last change.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, DateTime, ForeignKey, Index, String, Table

from central_api.models.base import MicroUnits, metadata

# An item; never deleted (the ledgers reference it), only deactivated.
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
)

# A code a scanner reads, and how many of the item's unit one scan of it counts.
item_barcodes = Table(
    "item_barcodes",
    metadata,
    Column("barcode", String(64), primary_key=True),
    Column("item_code", String(64), ForeignKey(items.c.item_code), nullable=False),
    Column("qty_per", MicroUnits, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "item_code"),
)
