"""A store's counter sales: revenue booked from the edge's ``sale`` / ``return`` events.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04

The counter station at a store books each receipt line as a ``sale`` event naming its
``retail_receipt`` line, with the unit price and payment method in ``ref``; a refund as
``return`` events naming the sold line. The ``retail`` projection keeps one row per such
event here, so revenue (and, by ``event_id``, the cost of goods valuation gives the same
event) can be read per store, item, day and payment method.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retail_sales",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("receipt", sa.String(64), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("refund", sa.String(64), nullable=True),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=True),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("payment", sa.String(16), nullable=False),
        sa.Column("sold_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_retail_sales_site_id_sold_at", "retail_sales", ["site_id", "sold_at"])
    op.create_index("ix_retail_sales_receipt", "retail_sales", ["receipt"])


def downgrade() -> None:
    op.drop_index("ix_retail_sales_receipt", table_name="retail_sales")
    op.drop_index("ix_retail_sales_site_id_sold_at", table_name="retail_sales")
    op.drop_table("retail_sales")
