"""Purchasing (issue 14): requisitions, purchase orders, their lines and exceptions; the
ledger event's document reference; new grants.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Events already held name no document (the three new columns stay NULL), which is what
their contract form says. The new actions are *added* to the default roles that still
exist, as migration 0009 did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "purchaser": "requisition.read requisition.create requisition.approve purchase_order.read "
    "purchase_order.create purchase_order.approve purchase_order.send purchase_order.cancel "
    "purchase_order.close purchase_exception.resolve",
    "store_manager": "requisition.read requisition.create purchase_order.read",
    "warehouse_clerk": "purchase_order.read",
    "finance": "requisition.read purchase_order.read",
    "auditor": "requisition.read purchase_order.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already, ``sales`` buys nothing."""


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    now = datetime.now(UTC)
    with op.batch_alter_table("ledger_events") as batch:
        batch.add_column(sa.Column("doc_type", sa.String(32), nullable=True))
        batch.add_column(sa.Column("doc_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("doc_line", sa.BigInteger(), nullable=True))
    op.create_table(
        "requisitions",
        sa.Column("req_id", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("req_id", name="pk_requisitions"),
    )
    op.create_index("ix_requisitions_status_req_id", "requisitions", ["status", "req_id"])
    op.create_index("ix_requisitions_site_id_req_id", "requisitions", ["site_id", "req_id"])
    op.create_table(
        "requisition_lines",
        sa.Column("req_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        _money("qty"),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("base_qty"),
        sa.Column("supplier_code", sa.String(64), nullable=True),
        sa.Column("expected_date", sa.Date(), nullable=True),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("po_id", sa.String(32), nullable=True),
        sa.Column("po_line", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["req_id"], ["requisitions.req_id"], name="fk_requisition_lines_req_id_requisitions"
        ),
        sa.PrimaryKeyConstraint("req_id", "line_no", name="pk_requisition_lines"),
    )
    op.create_table(
        "purchase_orders",
        sa.Column("po_id", sa.String(32), nullable=False),
        sa.Column("supplier_code", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approved_by", sa.String(100), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("po_id", name="pk_purchase_orders"),
    )
    for columns in (["status", "po_id"], ["site_id", "po_id"], ["supplier_code", "po_id"]):
        op.create_index(f"ix_purchase_orders_{'_'.join(columns)}", "purchase_orders", columns)
    op.create_index("ix_purchase_orders_created_at", "purchase_orders", ["created_at"])
    op.create_table(
        "purchase_order_lines",
        sa.Column("po_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        _money("qty"),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("base_qty"),
        sa.Column("base_uom", sa.String(16), nullable=False),
        _money("unit_price", nullable=True),
        _money("tax_rate", nullable=True),
        sa.Column("expected_date", sa.Date(), nullable=True),
        _money("over_tolerance"),
        _money("under_tolerance"),
        _money("received_qty"),
        sa.Column("req_id", sa.String(32), nullable=True),
        sa.Column("req_line", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["po_id"],
            ["purchase_orders.po_id"],
            name="fk_purchase_order_lines_po_id_purchase_orders",
        ),
        sa.PrimaryKeyConstraint("po_id", "line_no", name="pk_purchase_order_lines"),
    )
    op.create_table(
        "purchase_exceptions",
        sa.Column("exception_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("po_id", sa.String(64), nullable=True),
        sa.Column("line_no", sa.BigInteger(), nullable=True),
        sa.Column("event_id", sa.String(36), nullable=True),
        _money("qty", nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(1000), nullable=True),
        sa.PrimaryKeyConstraint("exception_id", name="pk_purchase_exceptions"),
    )
    op.create_index(
        "ix_purchase_exceptions_status_exception_id",
        "purchase_exceptions",
        ["status", "exception_id"],
    )
    op.create_index("ix_purchase_exceptions_po_id", "purchase_exceptions", ["po_id"])

    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("purchase_exceptions")
    op.drop_table("purchase_order_lines")
    op.drop_table("purchase_orders")
    op.drop_table("requisition_lines")
    op.drop_table("requisitions")
    with op.batch_alter_table("ledger_events") as batch:
        batch.drop_column("doc_line")
        batch.drop_column("doc_id")
        batch.drop_column("doc_type")
