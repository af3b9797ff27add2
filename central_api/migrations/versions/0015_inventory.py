"""Inventory control (issue 16, central): other receipts and issues, write-offs, transfers
with their in-transit projection and arrival exceptions, stock counts; new grants.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

The new actions are *added* to the default roles that still exist, as 0010-0012 did. A
warehouse clerk records and counts (blind: ``stock_count.count`` never shows the expected
quantity) but approves nothing and holds no financial group; store managers and finance
approve.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from central_api.migrations.grants import grant, revoke

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_GRANTS: dict[str, str] = {
    "warehouse_clerk": "other_movement.read other_movement.create write_off.read "
    "write_off.create transfer.read transfer.ship transfer.receive stock_count.count",
    "store_manager": "other_movement.read other_movement.create write_off.read "
    "write_off.create write_off.approve transfer.read transfer.create transfer.approve "
    "transfer.ship transfer.receive transfer.cancel transfer_exception.resolve "
    "stock_count.read stock_count.create stock_count.approve",
    "finance": "other_movement.read write_off.read write_off.approve transfer.read "
    "stock_count.read stock_count.approve",
    "auditor": "other_movement.read write_off.read transfer.read stock_count.read",
}
"""Actions each default role gains; ``admin`` holds ``*`` already."""

_TABLES = (
    "stock_count_lines",
    "stock_counts",
    "transfer_exceptions",
    "transfer_lots",
    "transfer_lines",
    "transfer_orders",
    "stock_document_lines",
    "stock_documents",
)


def _money(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _text(name: str, size: int, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(size), nullable=nullable)


def _at(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _index(table: str, *columns: str, unique: bool = False) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), unique=unique)


def _base_quantity() -> list[sa.Column[Any]]:
    return [_money("qty"), _text("uom", 16), _money("base_qty"), _text("base_uom", 16)]


def upgrade() -> None:
    now = datetime.now(UTC)
    op.create_table(
        "stock_documents",
        _text("doc_id", 32),
        _text("kind", 16),
        _text("site_id", 32),
        _text("reason_code", 32),
        _text("status", 16),
        _text("note", 1000),
        _money("value", nullable=True),
        _text("created_by", 100),
        _at("created_at"),
        _text("decided_by", 100, nullable=True),
        _at("decided_at", nullable=True),
        _text("decision_note", 1000, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("doc_id", name="pk_stock_documents"),
    )
    _index("stock_documents", "kind", "doc_id")
    _index("stock_documents", "site_id", "doc_id")
    op.create_table(
        "stock_document_lines",
        _text("doc_id", 32),
        sa.Column("line_no", sa.Integer(), nullable=False),
        _text("item_code", 64),
        _text("location", 64),
        *_base_quantity(),
        _text("lot", 40, nullable=True),
        sa.Column("expiry", sa.Date(), nullable=True),
        _money("unit_cost", nullable=True),
        sa.ForeignKeyConstraint(
            ["doc_id"],
            ["stock_documents.doc_id"],
            name="fk_stock_document_lines_doc_id_stock_documents",
        ),
        sa.PrimaryKeyConstraint("doc_id", "line_no", name="pk_stock_document_lines"),
    )
    op.create_table(
        "transfer_orders",
        _text("transfer_id", 32),
        _text("from_site", 32),
        _text("to_site", 32),
        _text("status", 16),
        _text("note", 1000),
        _text("created_by", 100),
        _at("created_at"),
        _text("approved_by", 100, nullable=True),
        _at("approved_at", nullable=True),
        _at("shipped_at", nullable=True),
        _at("received_at", nullable=True),
        _text("reason", 1000, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("transfer_id", name="pk_transfer_orders"),
    )
    for column in ("status", "from_site", "to_site"):
        _index("transfer_orders", column, "transfer_id")
    op.create_table(
        "transfer_lines",
        _text("transfer_id", 32),
        sa.Column("line_no", sa.Integer(), nullable=False),
        _text("item_code", 64),
        *_base_quantity(),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["transfer_orders.transfer_id"],
            name="fk_transfer_lines_transfer_id_transfer_orders",
        ),
        sa.PrimaryKeyConstraint("transfer_id", "line_no", name="pk_transfer_lines"),
    )
    op.create_table(
        "transfer_lots",
        _text("transfer_id", 32),
        sa.Column("line_no", sa.BigInteger(), nullable=False),
        _text("lot", 40),
        sa.Column("expiry", sa.Date(), nullable=True),
        _money("shipped_qty"),
        _money("received_qty"),
        _money("lost_qty"),
        sa.PrimaryKeyConstraint("transfer_id", "line_no", "lot", name="pk_transfer_lots"),
    )
    op.create_table(
        "transfer_exceptions",
        sa.Column("exception_id", sa.Integer(), autoincrement=True, nullable=False),
        _text("transfer_id", 32),
        sa.Column("line_no", sa.BigInteger(), nullable=False),
        _text("kind", 16),
        _text("item_code", 64),
        _text("lot", 40),
        _money("shipped_qty"),
        _money("received_qty"),
        _text("status", 16),
        _at("raised_at"),
        _text("resolved_by", 100, nullable=True),
        _at("resolved_at", nullable=True),
        _text("resolution", 1000, nullable=True),
        sa.PrimaryKeyConstraint("exception_id", name="pk_transfer_exceptions"),
    )
    _index("transfer_exceptions", "transfer_id")
    _index("transfer_exceptions", "status", "exception_id")
    op.create_table(
        "stock_counts",
        _text("count_id", 32),
        _text("site_id", 32),
        _text("location_from", 64, nullable=True),
        _text("location_to", 64, nullable=True),
        _text("status", 16),
        _text("note", 1000),
        _at("snapshot_at"),
        _text("created_by", 100),
        _at("created_at"),
        _text("approved_by", 100, nullable=True),
        _at("approved_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("count_id", name="pk_stock_counts"),
    )
    _index("stock_counts", "site_id", "count_id")
    op.create_table(
        "stock_count_lines",
        _text("count_id", 32),
        sa.Column("line_no", sa.Integer(), nullable=False),
        _text("location", 64),
        _text("item_code", 64),
        _text("lot", 40),
        _text("uom", 16),
        _money("expected_qty"),
        _money("system_qty", nullable=True),
        _money("counted_qty", nullable=True),
        _money("first_qty", nullable=True),
        sa.Column("recount", sa.Boolean(), nullable=False),
        _text("counted_by", 100, nullable=True),
        _at("counted_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["count_id"],
            ["stock_counts.count_id"],
            name="fk_stock_count_lines_count_id_stock_counts",
        ),
        sa.PrimaryKeyConstraint("count_id", "line_no", name="pk_stock_count_lines"),
    )
    _index("stock_count_lines", "count_id", "location", "item_code", "lot", unique=True)

    connection = op.get_bind()
    grant(connection, NEW_GRANTS, now)


def downgrade() -> None:
    connection = op.get_bind()
    revoke(connection, NEW_GRANTS)
    for table in _TABLES:
        op.drop_table(table)
