"""Items, their barcodes, and the change feed the edges pull them from.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

``feed_counter`` starts with its single row at version 0, so the first change is version 1
and a writer never has to create the row (see ``central_api.services.feed``). Amounts are
BIGINT micro-units, as in 0001; the tables are spelled out rather than imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_code", name="pk_items"),
    )
    op.create_table(
        "item_barcodes",
        sa.Column("barcode", sa.String(64), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("qty_per", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("barcode", name="pk_item_barcodes"),
        sa.ForeignKeyConstraint(
            ["item_code"], ["items.item_code"], name="fk_item_barcodes_item_code_items"
        ),
    )
    op.create_index("ix_item_barcodes_item_code", "item_barcodes", ["item_code"])
    op.create_table(
        "change_feed",
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("site_id", sa.String(32), nullable=True),
        sa.Column("entity", sa.String(16), nullable=False),
        sa.Column("entity_key", sa.String(128), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_change_feed"),
    )
    op.create_index("ix_change_feed_site_id_version", "change_feed", ["site_id", "version"])
    feed_counter = op.create_table(
        "feed_counter",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feed_counter"),
        sa.CheckConstraint("id = 1", name="ck_feed_counter_single_row"),
    )
    op.bulk_insert(feed_counter, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("feed_counter")
    op.drop_index("ix_change_feed_site_id_version", table_name="change_feed")
    op.drop_table("change_feed")
    op.drop_index("ix_item_barcodes_item_code", table_name="item_barcodes")
    op.drop_table("item_barcodes")
    op.drop_table("items")
