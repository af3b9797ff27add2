"""Valuation (issue 17): per (site, item) state, per-event cost of goods, FIFO layers; the
``valuation.read`` grant.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

Amounts are micro-units in BIGINT, as everywhere. The tables start empty: a database
that already holds ledger events is valued by ``jxc central check --repair`` (a rebuild
from the ledger), which the migration does not run itself, since on a large ledger it
is an operator's decision when to spend that time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "store_manager": "valuation.read",
    "finance": "valuation.read",
    "auditor": "valuation.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already. Only roles with the
financial field group: the whole answer is money."""


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    now = datetime.now(UTC)
    op.create_table(
        "valuation_state",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        _money("qty"),
        _money("value"),
        _money("last_cost"),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_id", sa.String(36), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "item", name="pk_valuation_state"),
    )
    op.create_table(
        "valuation_entries",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        _money("qty"),
        _money("in_cost", nullable=True),
        sa.Column("cost_source", sa.String(16), nullable=False),
        sa.Column("link", sa.String(128), nullable=True),
        _money("in_value"),
        _money("cogs"),
        _money("variance"),
        _money("shortfall"),
        _money("qty_after"),
        _money("value_after"),
        _money("last_cost_after"),
        sa.PrimaryKeyConstraint("event_id", name="pk_valuation_entries"),
    )
    op.create_index(
        "ix_valuation_entries_site_id_item_occurred_at_event_id",
        "valuation_entries",
        ["site_id", "item", "occurred_at", "event_id"],
    )
    op.create_index(
        "ix_valuation_entries_link",
        "valuation_entries",
        ["link"],
        sqlite_where=sa.text("link IS NOT NULL"),
        postgresql_where=sa.text("link IS NOT NULL"),
    )
    op.create_table(
        "valuation_layers",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("layer_no", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        _money("qty"),
        _money("value"),
        sa.PrimaryKeyConstraint("site_id", "item", "layer_no", name="pk_valuation_layers"),
    )

    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("valuation_layers")
    op.drop_index("ix_valuation_entries_link", table_name="valuation_entries")
    op.drop_index(
        "ix_valuation_entries_site_id_item_occurred_at_event_id", table_name="valuation_entries"
    )
    op.drop_table("valuation_entries")
    op.drop_table("valuation_state")
