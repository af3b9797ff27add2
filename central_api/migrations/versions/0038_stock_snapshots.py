"""Stock snapshots: balances per (site, item, location, lot) at each month's start.

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-05

Stock as of a past moment per location and lot summed the ledger rows on the smaller side
of the moment: tens of thousands for an item with a long history (issue 17, 116-273 ms).
``stock_snapshots`` holds, for every (site, item) that moved in a month, the sum per
(location, lot) of the events before the next month's start; the read adds at most about
a month of movements (``services.snapshots``). ``stock_snapshot_runs`` records which
month starts each site has had written. Both start empty: a key without a snapshot is read
as before, and central's monitor writes the month just begun from its next check on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0038"
down_revision: str | None = "0037"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock_snapshots",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("moment", sa.DateTime(timezone=True), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),  # micro-units
        sa.PrimaryKeyConstraint(
            "site_id", "item", "moment", "location", "lot", name="pk_stock_snapshots"
        ),
    )
    op.create_table(
        "stock_snapshot_runs",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("moment", sa.DateTime(timezone=True), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keys", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "moment", name="pk_stock_snapshot_runs"),
    )


def downgrade() -> None:
    op.drop_table("stock_snapshot_runs")
    op.drop_table("stock_snapshots")
