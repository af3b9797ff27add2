"""Credit notes against sales invoices (红字发票), for customer returns and price corrections.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04

A credit note takes money off one sales invoice: what is owed on it becomes gross − paid
− credited, in the ageing too. Finance gains ``sales_invoice.credit``; the admin holds
``*`` already.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {"finance": "sales_invoice.credit"}


def _grant(connection: sa.Connection, now: datetime) -> None:
    grant(connection, NEW_GRANTS, now)


def upgrade() -> None:
    op.create_table(
        "credit_notes",
        sa.Column("credit_id", sa.String(32), nullable=False),
        sa.Column("invoice_id", sa.String(32), nullable=False),
        sa.Column("customer_code", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("credit_date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("return_id", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.Column("gross_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["sales_invoices.invoice_id"],
            name="fk_credit_notes_invoice_id_sales_invoices",
        ),
        sa.PrimaryKeyConstraint("credit_id", name="pk_credit_notes"),
    )
    for columns in (["invoice_id"], ["site_id", "credit_id"]):
        op.create_index(f"ix_credit_notes_{'_'.join(columns)}", "credit_notes", columns)
    op.create_table(
        "credit_note_lines",
        sa.Column("credit_id", sa.String(32), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("invoice_line", sa.Integer(), nullable=False),
        sa.Column("item_code", sa.String(64), nullable=False),
        sa.Column("qty", sa.BigInteger(), nullable=True),
        sa.Column("uom", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("tax_amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_id"],
            ["credit_notes.credit_id"],
            name="fk_credit_note_lines_credit_id_credit_notes",
        ),
        sa.PrimaryKeyConstraint("credit_id", "line_no", name="pk_credit_note_lines"),
    )
    _grant(op.get_bind(), datetime.now(UTC))


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    op.drop_table("credit_note_lines")
    for columns in (["site_id", "credit_id"], ["invoice_id"]):
        op.drop_index(f"ix_credit_notes_{'_'.join(columns)}", table_name="credit_notes")
    op.drop_table("credit_notes")
