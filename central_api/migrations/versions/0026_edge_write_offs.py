"""Write-offs recorded at an edge.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-04

Damage found on the spot is booked at the site's edge as a ``scrap`` event (the fact is
never refused) and becomes a write-off document at central when it arrives, so the
approval threshold applies to it as to one entered at central. ``stock_documents.edge_ref``
is ``<site> <the edge's write-off number>`` for such a document (NULL for central's own):
its stock is already booked, so approving it books nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stock_documents", sa.Column("edge_ref", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stock_documents") as table:
        table.drop_column("edge_ref")
