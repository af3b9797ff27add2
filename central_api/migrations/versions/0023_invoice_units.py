"""Supplier invoice lines in any unit of the item.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04

A supplier often invoices in another unit than the PO was placed in (cases ordered,
pieces invoiced). ``supplier_invoice_lines.uom`` is the unit of the line's ``qty`` and
``unit_price``; NULL (every line written before this revision) means the PO line's own
unit, which is what those lines were.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("supplier_invoice_lines", sa.Column("uom", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("supplier_invoice_lines") as table:
        table.drop_column("uom")
