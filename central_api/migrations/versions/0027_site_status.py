"""What each edge reports about itself (outbox depth, device states), and one uncleared
operations alert per key.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04

``site_status`` keeps the latest ``POST /api/v1/sync/status`` of each site and
``site_devices`` each reported device with the time its current state began; both are
new, so nothing is migrated. ``ix_alerts_active_ops`` is to the monitor's alerts
(``source = 'ops'``) what ``ix_alerts_active_key`` is to the stock alerts.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE_OPS = "cleared_at IS NULL AND source = 'ops'"


def upgrade() -> None:
    op.create_table(
        "site_status",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_depth", sa.BigInteger(), nullable=False),
        sa.Column("dead_letters", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_site_status"),
    )
    op.create_table(
        "site_devices",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("since_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "device_id", name="pk_site_devices"),
    )
    op.create_index(
        "ix_alerts_active_ops",
        "alerts",
        ["kind", "site_id", "item_code", "location", "lot"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE_OPS),
        postgresql_where=sa.text(_ACTIVE_OPS),
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_active_ops", table_name="alerts")
    op.drop_table("site_devices")
    op.drop_table("site_status")
