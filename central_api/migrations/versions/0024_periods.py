"""Period close (月结) and the lot recall view: closed months, their closing values, grants.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04

``period_closes`` / ``period_close_values`` (see ``central_api.models.periods``). An index
on ``central_events (item, lot)`` lets the recall view find every central booking of a lot
without reading the whole stream (``ledger_events`` has had one since 0012).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "finance": "period.read period.close",
    "store_manager": "period.read",
    "auditor": "period.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already (reopening a month and
booking into a closed one are left to it, or to a role an admin makes)."""


def upgrade() -> None:
    op.create_table(
        "period_closes",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("closed_by", sa.String(100), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reopened_by", sa.String(100), nullable=True),
        sa.Column("reopened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("period", name="pk_period_closes"),
    )
    op.create_table(
        "period_close_values",
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period", "site_id", name="pk_period_close_values"),
    )
    op.create_index("ix_central_events_item_lot", "central_events", ["item", "lot"])
    now = datetime.now(UTC)
    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_index("ix_central_events_item_lot", table_name="central_events")
    op.drop_table("period_close_values")
    op.drop_table("period_closes")
