"""The change feed (central -> edge): every master-data change a site needs, numbered.

Rows are appended by ``central_api.services.feed.feed_writer`` inside the transaction of
the write they describe, under a version taken from ``feed_counter``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from central_api.models.base import metadata

# One row per change, in version order; site_id NULL means every site.
change_feed = Table(
    "change_feed",
    metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("site_id", String(32), nullable=True),
    Column("entity", String(16), nullable=False),
    Column("entity_key", String(128), nullable=False),
    Column("op", String(8), nullable=False),
    Column("data", Text, nullable=True),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Index(None, "site_id", "version"),
)

# Exactly one row (id 1): the last version handed out. Its row lock orders feed writers.
feed_counter = Table(
    "feed_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", BigInteger, nullable=False),
    CheckConstraint("id = 1", name="ck_feed_counter_single_row"),
)
