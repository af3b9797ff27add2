"""Sales orders placed by an online shop.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-04

``POST /api/v1/integrations/orders`` makes a sales order from a shop's order exactly once
per (``channel``, ``external_id``): the unique index is what refuses a second one, even
from two requests at the same instant in two processes. ``import_sha256`` is the hash of
the request that made it, so a retry of the same order is answered with it and the same
id with a different order is refused. All three are NULL for orders made at central (a
unique index lets NULLs repeat on SQLite and PostgreSQL), so nothing is migrated.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sales_orders", sa.Column("channel", sa.String(64), nullable=True))
    op.add_column("sales_orders", sa.Column("external_id", sa.String(128), nullable=True))
    op.add_column("sales_orders", sa.Column("import_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_sales_orders_channel_external_id",
        "sales_orders",
        ["channel", "external_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_sales_orders_channel_external_id", table_name="sales_orders")
    with op.batch_alter_table("sales_orders") as table:
        table.drop_column("import_sha256")
        table.drop_column("external_id")
        table.drop_column("channel")
