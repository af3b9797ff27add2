"""Sales (issue 15, central core): price lists, sales orders, lot reservations; an index
on the ledger for the (item, lot) → expiry lookup; new grants.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

The new actions are *added* to the default roles that still exist, as 0009 and 0010 did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "sales": "price_list.read price_list.write sales_order.read sales_order.create "
    "sales_order.confirm sales_order.cancel sales_order.close",
    "store_manager": "price_list.read sales_order.read",
    "warehouse_clerk": "sales_order.read",
    "finance": "price_list.read sales_order.read",
    "auditor": "price_list.read sales_order.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already. A clerk reads orders
but holds no financial field group, so sees no price."""


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    now = datetime.now(UTC)
    op.create_index("ix_ledger_events_item_lot_expiry", "ledger_events", ["item", "lot", "expiry"])
    op.create_table(
        "price_lists",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_price_lists"),
    )
    op.create_table(
        "price_list_lines",
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("price"),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(
            ["code"], ["price_lists.code"], name="fk_price_list_lines_code_price_lists"
        ),
        sa.PrimaryKeyConstraint("code", "line_no", name="pk_price_list_lines"),
    )
    op.create_index("ix_price_list_lines_code_item_code", "price_list_lines", ["code", "item_code"])
    op.create_table(
        "sales_orders",
        sa.Column("so_id", sa.String(32), nullable=False),
        sa.Column("customer_code", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("min_remaining_days", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_by", sa.String(100), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("so_id", name="pk_sales_orders"),
    )
    for columns in (["status", "so_id"], ["site_id", "so_id"], ["customer_code", "status"]):
        op.create_index(f"ix_sales_orders_{'_'.join(columns)}", "sales_orders", columns)
    op.create_table(
        "sales_order_lines",
        sa.Column("so_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        _money("qty"),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("base_qty"),
        sa.Column("base_uom", sa.String(16), nullable=False),
        _money("unit_price"),
        _money("tax_rate"),
        sa.Column("requested_date", sa.Date(), nullable=True),
        _money("shipped_qty"),
        sa.ForeignKeyConstraint(
            ["so_id"], ["sales_orders.so_id"], name="fk_sales_order_lines_so_id_sales_orders"
        ),
        sa.PrimaryKeyConstraint("so_id", "line_no", name="pk_sales_order_lines"),
    )
    op.create_table(
        "sales_reservations",
        sa.Column("so_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=True),
        _money("qty"),
        sa.ForeignKeyConstraint(
            ["so_id", "line_no"],
            ["sales_order_lines.so_id", "sales_order_lines.line_no"],
            name="fk_sales_reservations_so_id_sales_order_lines",
        ),
        sa.PrimaryKeyConstraint("so_id", "line_no", "lot", name="pk_sales_reservations"),
    )
    op.create_index(
        "ix_sales_reservations_site_id_item_code_lot",
        "sales_reservations",
        ["site_id", "item_code", "lot"],
    )

    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("sales_reservations")
    op.drop_table("sales_order_lines")
    op.drop_table("sales_orders")
    op.drop_table("price_list_lines")
    op.drop_table("price_lists")
    op.drop_index("ix_ledger_events_item_lot_expiry", table_name="ledger_events")
