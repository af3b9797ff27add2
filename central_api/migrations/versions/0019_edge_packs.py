"""Shipments picked and packed at an edge: the SSCC of the logistic unit.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04

An edge's picking station packs each lot it picked for an order into a logistic unit with
an SSCC-18 and books the picks as ``issue`` events whose ``ref`` names that SSCC. Ingest
(``so_progress``) books them into one shipment per SSCC; the column finds that shipment
again when the unit's events arrive in two pushes. An SSCC is unique by its construction
(GS1 company prefix + a serial the site never reuses), so the index is unique; NULL for
shipments confirmed at central.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("shipments", sa.Column("sscc", sa.String(18), nullable=True))
    op.create_index("ix_shipments_sscc", "shipments", ["sscc"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_shipments_sscc", table_name="shipments")
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("sscc")
