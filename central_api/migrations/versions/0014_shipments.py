"""Shipments, customer returns, sales invoices and payments (issue 15): shipments of
sales orders confirmed at central, return authorisations, invoices from shipments and the
payments received against them; new grants for all of them.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

The new actions are *added* to the default roles that still exist, as 0010 and 0012 did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "sales": "pick_list.read shipment.read shipment.create customer_return.read "
    "customer_return.create sales_invoice.read receivable.read",
    "store_manager": "pick_list.read shipment.read shipment.create customer_return.read "
    "customer_return.create customer_return.receive customer_return.dispose",
    "warehouse_clerk": "pick_list.read shipment.read shipment.create customer_return.read "
    "customer_return.receive customer_return.dispose",
    "finance": "shipment.read customer_return.read sales_invoice.read sales_invoice.create "
    "sales_invoice.payment receivable.read",
    "auditor": "pick_list.read shipment.read customer_return.read sales_invoice.read "
    "receivable.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already. A clerk picks, ships
and handles returns but holds no financial field group and no invoice or receivable
action: a pick list, a shipment and a return carry no price. Finance invoices and takes
payments; sales and auditors read invoices and ageing."""


def _grant(connection: sa.Connection, now: datetime) -> None:
    grant(connection, NEW_GRANTS, now)


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("so_id", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("customer_code", sa.String(64), nullable=False),
        sa.Column("tracking_no", sa.String(64), nullable=True),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["so_id"], ["sales_orders.so_id"], name="fk_shipments_so_id_sales_orders"
        ),
        sa.PrimaryKeyConstraint("shipment_id", name="pk_shipments"),
    )
    op.create_index("ix_shipments_so_id", "shipments", ["so_id"])
    op.create_index("ix_shipments_site_id_shipment_id", "shipments", ["site_id", "shipment_id"])
    op.create_table(
        "shipment_lines",
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("so_line", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.shipment_id"],
            name="fk_shipment_lines_shipment_id_shipments",
        ),
        sa.PrimaryKeyConstraint("shipment_id", "line_no", name="pk_shipment_lines"),
    )
    op.create_table(
        "customer_returns",
        sa.Column("return_id", sa.String(32), nullable=False),
        sa.Column("so_id", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("customer_code", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_by", sa.String(100), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["so_id"], ["sales_orders.so_id"], name="fk_customer_returns_so_id_sales_orders"
        ),
        sa.PrimaryKeyConstraint("return_id", name="pk_customer_returns"),
    )
    op.create_index("ix_customer_returns_so_id", "customer_returns", ["so_id"])
    op.create_index(
        "ix_customer_returns_site_id_return_id", "customer_returns", ["site_id", "return_id"]
    )
    op.create_table(
        "customer_return_lines",
        sa.Column("return_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("so_line", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("lot", sa.String(40), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("location", sa.String(64), nullable=True),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["return_id"],
            ["customer_returns.return_id"],
            name="fk_customer_return_lines_return_id_customer_returns",
        ),
        sa.PrimaryKeyConstraint("return_id", "line_no", name="pk_customer_return_lines"),
    )
    op.create_table(
        "sales_invoices",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("shipment_id", sa.String(32), nullable=False),
        sa.Column("so_id", sa.String(32), nullable=False),
        sa.Column("customer_code", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("invoice_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("gross_amount", sa.BigInteger(), nullable=False),
        sa.Column("paid_amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.shipment_id"],
            name="fk_sales_invoices_shipment_id_shipments",
        ),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_sales_invoices"),
        sa.UniqueConstraint("shipment_id", name="uq_sales_invoices_shipment_id"),
    )
    for columns in (["customer_code", "status"], ["so_id"], ["site_id", "invoice_id"]):
        op.create_index(f"ix_sales_invoices_{'_'.join(columns)}", "sales_invoices", columns)
    op.create_table(
        "sales_invoice_lines",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("shipment_line", sa.Integer(), nullable=False),
        sa.Column("so_line", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=False),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("unit_price", sa.BigInteger(), nullable=False),
        sa.Column("tax_rate", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["sales_invoices.invoice_id"],
            name="fk_sales_invoice_lines_invoice_id_sales_invoices",
        ),
        sa.PrimaryKeyConstraint("invoice_id", "line_no", name="pk_sales_invoice_lines"),
    )
    op.create_table(
        "customer_payments",
        sa.Column("payment_id", sa.String(32), nullable=False),
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("customer_code", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["sales_invoices.invoice_id"],
            name="fk_customer_payments_invoice_id_sales_invoices",
        ),
        sa.PrimaryKeyConstraint("payment_id", name="pk_customer_payments"),
    )
    op.create_index("ix_customer_payments_invoice_id", "customer_payments", ["invoice_id"])
    _grant(op.get_bind(), datetime.now(UTC))


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("customer_payments")
    op.drop_table("sales_invoice_lines")
    op.drop_table("sales_invoices")
    op.drop_table("customer_return_lines")
    op.drop_table("customer_returns")
    op.drop_table("shipment_lines")
    op.drop_table("shipments")
