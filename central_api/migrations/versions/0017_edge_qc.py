"""QC at central of the cartons an edge booked into quarantine; an index for the events
that name a document.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

``edge_qc_decisions`` holds one decision per edge event (a carton is released or rejected
whole); the moves themselves are events in central's own stream. The index on
``ledger_events.doc_id`` is *partial* (only rows that name a document): most events a site
pushes name none, and ingest should not pay to index them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edge_qc_decisions",
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("po_id", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("location", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_edge_qc_decisions"),
    )
    op.create_index("ix_edge_qc_decisions_po_id", "edge_qc_decisions", ["po_id"])
    op.create_index(
        "ix_ledger_events_doc_id",
        "ledger_events",
        ["doc_id"],
        sqlite_where=sa.text("doc_id IS NOT NULL"),
        postgresql_where=sa.text("doc_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_events_doc_id", "ledger_events")
    op.drop_table("edge_qc_decisions")
