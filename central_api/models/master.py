"""Master data (基础资料) beyond the item itself: categories and coding rules, units,
per-site replenishment, partners, sites and their location trees, reference lists, and the
idempotency keys of creates.

The item's own new attributes are columns of ``items`` (``central_api.models.items``).
Rows that an edge needs carry ``version`` (the change feed's version of their last change,
see ``central_api.services.feed``); partners do not reach sites, and a category reaches
them only as its parent and expiry bands (``categories.publish``), without a version here.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from central_api.models.base import MicroUnits, metadata

# A node of the item category tree, and its coding rule (编码规则).
categories = Table(
    "categories",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("parent_code", String(32), ForeignKey("categories.code"), nullable=True),
    Column("name", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    # Sequence rule: new items get prefix + zero-padded number; NULL: codes are manual.
    Column("code_prefix", String(16), nullable=True),
    Column("code_digits", Integer, nullable=False),
    # Manual rule: a regular expression a hand-given item code must match in full.
    Column("code_pattern", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "parent_code"),
)

# The last number handed out per code prefix; its row is locked while one is taken.
code_sequences = Table(
    "code_sequences",
    metadata,
    Column("prefix", String(16), primary_key=True),
    Column("last_value", BigInteger, nullable=False),
)

# An item's other units: one ``uom`` holds ``factor`` of the item's base unit (箱 = 120 片).
item_units = Table(
    "item_units",
    metadata,
    Column("item_code", String(64), ForeignKey("items.item_code"), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("factor", MicroUnits, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("item_code", "uom"),
)

# Safety stock, reorder point and reorder quantity of an item at one site.
item_site_levels = Table(
    "item_site_levels",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("item_code", String(64), ForeignKey("items.item_code"), nullable=False),
    Column("safety_stock", MicroUnits, nullable=False),
    Column("reorder_point", MicroUnits, nullable=False),
    Column("reorder_qty", MicroUnits, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "item_code"),
    Index(None, "item_code"),
)

# Suppliers and customers (往来单位); one partner may be both.
partners = Table(
    "partners",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("is_supplier", Boolean, nullable=False),
    Column("is_customer", Boolean, nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("tax_id", String(64), nullable=False),
    Column("contact", String(200), nullable=False),
    Column("phone", String(64), nullable=False),
    Column("email", String(200), nullable=False),
    Column("address", String(400), nullable=False),
    Column("payment_terms", String(32), nullable=True),
    Column("lead_time_days", Integer, nullable=True),
    # Financial: absent from every answer to a role without the financial field group.
    Column("credit_limit", MicroUnits, nullable=True),
    Column("price_list", String(32), nullable=True),
    Column("active", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A warehouse, store or dock; its id is the one its edge signs its events with.
sites = Table(
    "sites",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A node of a site's location tree: zone -> aisle -> bin.
locations = Table(
    "locations",
    metadata,
    Column("site_id", String(32), ForeignKey("sites.site_id"), nullable=False),
    Column("code", String(64), nullable=False),
    Column("parent_code", String(64), nullable=True),
    Column("level", String(8), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "code"),
    ForeignKeyConstraint(
        ["site_id", "parent_code"],
        ["locations.site_id", "locations.code"],
        name="fk_locations_parent",
    ),
    Index(None, "site_id", "parent_code"),
)

# One entry of a reference list (reason codes, payment terms, tax rates, units, label
# templates); ``attrs`` holds the list's own fields as canonical JSON.
reference_entries = Table(
    "reference_entries",
    metadata,
    Column("list_name", String(32), nullable=False),
    Column("code", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("name_en", String(200), nullable=False),
    Column("attrs", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("list_name", "code"),
)

# A create that named an Idempotency-Key: a retry with the same key and body is answered
# with the resource it made, never a second one.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", String(100), nullable=False),
    Column("key", String(128), nullable=False),
    Column("operation", String(100), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("resource_id", String(256), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("principal", "key"),
    Index(None, "created_at"),
)
