"""Valuation pending: a (site, item)'s tail left to settle after a late event.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-05

A late event of a busy (site, item) re-values every later entry (50,000 for the busy key
of ``bench/central.py``), more than a push can rewrite in 100 ms. Past ``LAG_AFTER`` later
entries the push now writes only its own events and records the (site, item) as *lagging*
from the late point; right after its commit the tail is re-valued in chunks, each in a
transaction of its own holding the site's lock, and every reader of values settles first
(``services.valuation``, "A long tail"). The record is a ``valuation_pending`` row beside
the transfer links already there: ``link`` is ``valuation_tail:<item>`` and the two new
columns name the boundary, the first entry (``occurred_at``, ``event_id``) whose results
may be stale. A transfer's row leaves them empty. Existing rows are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0040"
down_revision: str | None = "0039"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("valuation_pending") as batch:
        batch.add_column(sa.Column("since_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("since_event_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("valuation_pending") as batch:
        batch.drop_column("since_event_id")
        batch.drop_column("since_at")
