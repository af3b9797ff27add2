"""Count entries uploaded by edges, by the id each edge gave them.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04

``POST /api/v1/sync/count-entries`` takes each entry once: a replay (the edge did not
hear the answer) finds its row and changes nothing, so a later count of the same line
is never overwritten by an old one sent again. New table; nothing is migrated.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock_count_entries",
        sa.Column("entry_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("count_id", sa.String(32), nullable=True),
        sa.Column("refused", sa.String(300), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["count_id"],
            ["stock_counts.count_id"],
            name="fk_stock_count_entries_count_id_stock_counts",
        ),
        sa.PrimaryKeyConstraint("entry_id", name="pk_stock_count_entries"),
    )


def downgrade() -> None:
    op.drop_table("stock_count_entries")
