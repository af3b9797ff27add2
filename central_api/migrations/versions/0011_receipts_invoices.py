"""Receiving at central (issue 14): central's own event stream, receipts with QC,
purchase returns, supplier invoices, PO progress per line beyond "received"; new grants.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

Lines held before this migration had no QC: what they received counts as accepted
(``po_progress.rebuild`` recomputes every bucket from the ledger if wanted). The new
actions are *added* to the default roles that still exist, as 0009 and 0010 did.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "purchaser": "requisition.cancel purchase_receipt.read purchase_receipt.create "
    "purchase_receipt.qc purchase_return.read purchase_return.create supplier_invoice.read",
    "store_manager": "requisition.cancel purchase_receipt.read",
    "warehouse_clerk": "purchase_receipt.read purchase_receipt.create purchase_receipt.qc "
    "purchase_return.read purchase_return.create",
    "finance": "purchase_receipt.read purchase_return.read supplier_invoice.read "
    "supplier_invoice.create supplier_invoice.approve",
    "auditor": "purchase_receipt.read purchase_return.read supplier_invoice.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already."""

_PROGRESS = ("accepted_qty", "quarantined_qty", "returned_qty", "invoiced_qty")


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _grant(connection: sa.Connection, now: datetime) -> None:
    grant(connection, NEW_GRANTS, now)


def upgrade() -> None:
    now = datetime.now(UTC)
    with op.batch_alter_table("purchase_order_lines") as batch:
        for name in _PROGRESS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("purchase_order_lines") as batch:
        for name in _PROGRESS:
            batch.alter_column(name, server_default=None)
    lines = sa.table(
        "purchase_order_lines", sa.column("received_qty", sa.BigInteger), sa.column("accepted_qty")
    )
    op.execute(sa.update(lines).values(accepted_qty=lines.c.received_qty))
    op.create_table(
        "central_stream_state",
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", name="pk_central_stream_state"),
    )
    op.create_table(
        "central_events",
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
        _money("qty"),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("unit_cost", nullable=True),
        sa.Column("ref", sa.String(128), nullable=True),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("doc_type", sa.String(32), nullable=True),
        sa.Column("doc_id", sa.String(64), nullable=True),
        sa.Column("doc_line", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["site_sync_state.site_id"],
            name="fk_central_events_site_id_site_sync_state",
        ),
        sa.PrimaryKeyConstraint("event_id", name="pk_central_events"),
        sa.UniqueConstraint("site_id", "seq", name="uq_central_events_site_id_seq"),
    )
    op.create_index("ix_central_events_doc_id", "central_events", ["doc_id"])
    op.create_table(
        "purchase_receipts",
        sa.Column("receipt_id", sa.String(32), nullable=False),
        sa.Column("po_id", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("note", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("receipt_id", name="pk_purchase_receipts"),
    )
    op.create_index("ix_purchase_receipts_po_id", "purchase_receipts", ["po_id"])
    op.create_index(
        "ix_purchase_receipts_site_id_receipt_id", "purchase_receipts", ["site_id", "receipt_id"]
    )
    op.create_table(
        "purchase_receipt_lines",
        sa.Column("receipt_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("po_line", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        _money("qty"),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("base_qty"),
        sa.Column("base_uom", sa.String(16), nullable=False),
        sa.Column("lot", sa.String(40), nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.Column("qc_status", sa.String(16), nullable=False),
        sa.Column("qc_by", sa.String(100), nullable=True),
        sa.Column("qc_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("qc_reason", sa.String(1000), nullable=True),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["purchase_receipts.receipt_id"],
            name="fk_purchase_receipt_lines_receipt_id_purchase_receipts",
        ),
        sa.PrimaryKeyConstraint("receipt_id", "line_no", name="pk_purchase_receipt_lines"),
    )
    op.create_table(
        "purchase_returns",
        sa.Column("return_id", sa.String(32), nullable=False),
        sa.Column("po_id", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("return_id", name="pk_purchase_returns"),
    )
    op.create_index("ix_purchase_returns_po_id", "purchase_returns", ["po_id"])
    op.create_table(
        "purchase_return_lines",
        sa.Column("return_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("po_line", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        _money("qty"),
        sa.Column("uom", sa.String(16), nullable=False),
        _money("base_qty"),
        sa.Column("lot", sa.String(40), nullable=True),
        sa.Column("location", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["return_id"],
            ["purchase_returns.return_id"],
            name="fk_purchase_return_lines_return_id_purchase_returns",
        ),
        sa.PrimaryKeyConstraint("return_id", "line_no", name="pk_purchase_return_lines"),
    )
    op.create_table(
        "supplier_invoices",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("invoice_no", sa.String(64), nullable=False),
        sa.Column("supplier_code", sa.String(64), nullable=False),
        sa.Column("po_id", sa.String(32), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_supplier_invoices"),
        sa.UniqueConstraint(
            "supplier_code", "invoice_no", name="uq_supplier_invoices_supplier_code_invoice_no"
        ),
    )
    op.create_index("ix_supplier_invoices_po_id", "supplier_invoices", ["po_id"])
    op.create_index(
        "ix_supplier_invoices_status_invoice_id", "supplier_invoices", ["status", "invoice_id"]
    )
    op.create_table(
        "supplier_invoice_lines",
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("po_line", sa.Integer(), nullable=False),
        _money("qty"),
        _money("base_qty"),
        _money("unit_price"),
        _money("tax_rate"),
        _money("amount"),
        _money("po_price", nullable=True),
        _money("accepted_qty"),
        _money("price_diff", nullable=True),
        _money("qty_diff"),
        _money("amount_diff", nullable=True),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["supplier_invoices.invoice_id"],
            name="fk_supplier_invoice_lines_invoice_id_supplier_invoices",
        ),
        sa.PrimaryKeyConstraint("invoice_id", "line_no", name="pk_supplier_invoice_lines"),
    )
    _grant(op.get_bind(), now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    for table in (
        "supplier_invoice_lines",
        "supplier_invoices",
        "purchase_return_lines",
        "purchase_returns",
        "purchase_receipt_lines",
        "purchase_receipts",
        "central_events",
        "central_stream_state",
    ):
        op.drop_table(table)
    with op.batch_alter_table("purchase_order_lines") as batch:
        for name in _PROGRESS:
            batch.drop_column(name)
