"""Replenishment and the alerts inbox (issue 16, central): per-site supply planning
(lead time, preferred supplier), expiry alert bands per category, the alerts table; new
grants.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04

Safety stock, reorder point and reorder quantity stay in ``item_site_levels`` (they reach
the edge); ``item_site_supply`` holds what only central plans with. The inbox mirrors the
purchase and transfer exceptions already open, so it starts complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "purchaser": "replenishment.read replenishment.write alert.read alert.manage",
    "store_manager": "replenishment.read alert.read alert.manage",
    "warehouse_clerk": "alert.read",
    "finance": "alert.read",
    "auditor": "replenishment.read alert.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already."""

_ACTIVE = "cleared_at IS NULL AND source = 'stock'"


def upgrade() -> None:
    now = datetime.now(UTC)
    op.create_table(
        "item_site_supply",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=True),
        sa.Column("supplier_code", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "item_code", name="pk_item_site_supply"),
    )
    op.create_table(
        "expiry_alert_days",
        sa.Column("category_code", sa.String(32), nullable=False),
        sa.Column("days", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("category_code", name="pk_expiry_alert_days"),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(24), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=True),
        sa.Column("threshold", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("since_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(100), nullable=True),
        sa.Column("resolution", sa.String(1000), nullable=True),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_status_alert_id", "alerts", ["status", "alert_id"])
    op.create_index("ix_alerts_site_id_item_code", "alerts", ["site_id", "item_code"])
    op.create_index("ix_alerts_source_source_id", "alerts", ["source", "source_id"])
    op.create_index(
        "ix_alerts_active_key",
        "alerts",
        ["kind", "site_id", "item_code", "location", "lot"],
        unique=True,
        sqlite_where=sa.text(_ACTIVE),
        postgresql_where=sa.text(_ACTIVE),
    )
    _mirror_open_exceptions()
    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def _mirror_open_exceptions() -> None:
    """The open exceptions of before this migration, in the inbox like later ones."""
    op.execute(
        "INSERT INTO alerts (kind, source, source_id, site_id, item_code, location, lot, qty,"
        " threshold, detail, since_at, raised_at, cleared_at, status, owner, resolution,"
        " resolved_by, resolved_at, version, updated_at)"
        " SELECT e.kind, 'purchase_exception', CAST(e.exception_id AS VARCHAR(64)), e.site_id,"
        " '', '', '', e.qty, NULL, SUBSTR(e.detail, 1, 1000), e.raised_at, e.raised_at, NULL,"
        " 'open', NULL, NULL, NULL, NULL, 1, e.raised_at"
        " FROM purchase_exceptions e WHERE e.status = 'open'"
    )
    op.execute(
        "INSERT INTO alerts (kind, source, source_id, site_id, item_code, location, lot, qty,"
        " threshold, detail, since_at, raised_at, cleared_at, status, owner, resolution,"
        " resolved_by, resolved_at, version, updated_at)"
        " SELECT 'transfer_' || e.kind, 'transfer_exception',"
        " CAST(e.exception_id AS VARCHAR(64)), t.to_site, e.item_code, '', e.lot,"
        " e.received_qty, e.shipped_qty, 'transfer ' || e.transfer_id, e.raised_at,"
        " e.raised_at, NULL, 'open', NULL, NULL, NULL, NULL, 1, e.raised_at"
        " FROM transfer_exceptions e JOIN transfer_orders t ON t.transfer_id = e.transfer_id"
        " WHERE e.status = 'open'"
    )


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("alerts")
    op.drop_table("expiry_alert_days")
    op.drop_table("item_site_supply")
