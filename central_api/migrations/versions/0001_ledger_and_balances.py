"""Ledger events, per-site sync watermark and projected stock balances.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Amounts are BIGINT micro-units (see ``central_api.models.MicroUnits``); the table
definitions are spelled out here rather than imported, so this revision keeps creating
the same schema after the models move on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_sync_state",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("acked_through_seq", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_site_sync_state"),
    )
    op.create_table(
        "ledger_events",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("unit_cost", sa.BigInteger(), nullable=True),
        sa.Column("ref", sa.String(128), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("content_digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_ledger_events"),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site_sync_state.site_id"],
            name="fk_ledger_events_site_id_site_sync_state",
        ),
        sa.UniqueConstraint("site_id", "seq", name="uq_ledger_events_site_id_seq"),
    )
    op.create_table(
        "stock_balances",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "location", "item", "lot", name="pk_stock_balances"),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site_sync_state.site_id"],
            name="fk_stock_balances_site_id_site_sync_state",
        ),
    )
    op.create_index("ix_stock_balances_site_id_item", "stock_balances", ["site_id", "item"])


def downgrade() -> None:
    op.drop_index("ix_stock_balances_site_id_item", table_name="stock_balances")
    op.drop_table("stock_balances")
    op.drop_table("ledger_events")
    op.drop_table("site_sync_state")
