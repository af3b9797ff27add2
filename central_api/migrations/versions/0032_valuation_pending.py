"""Pending re-valuations: a transfer's cost to carry into another site, settled apart.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-05

A push that changes what a transfer_out cost no longer re-values the receiving site in
its own transaction (which, holding its own site's lock, deadlocked with a push of the
receiving site cascading back): it records a row here, and right after its commit a
transaction holding only the receiving site's lock settles and deletes it. A row left by
a crash in between is settled by that site's next push or ``jxc central check --repair``
(``docs/valuation.md``, "Transfers"). The table starts empty: nothing to migrate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "valuation_pending",
        sa.Column("pending_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("link", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pending_id"),
    )
    op.create_index("ix_valuation_pending_site_id", "valuation_pending", ["site_id"])


def downgrade() -> None:
    op.drop_index("ix_valuation_pending_site_id", table_name="valuation_pending")
    op.drop_table("valuation_pending")
