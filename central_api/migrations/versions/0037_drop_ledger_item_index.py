"""The ledger: drop 0036's (site_id, item, occurred_at) index; as-of reads go through valuation.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-05

Migration 0036 indexed ``ledger_events`` by (site_id, item, occurred_at) so that stock of
an item as of a past moment need not read a site's whole ledger. It cost every ingested
event one more index entry at a random place, about a sixth more CPU per push
(``bench/sync.py``, ``docs/performance.md``). ``valuation_entries`` already has that very
index and an entry per event, so ``services.reports`` now finds an item's events through
it and reads the ledger by primary key: the same rows, no extra write per event.
Downgrade recreates the index.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0037"
down_revision: str | None = "0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_ledger_events_site_id_item_occurred_at"


def upgrade() -> None:
    op.drop_index(_NAME, table_name="ledger_events")


def downgrade() -> None:
    op.create_index(_NAME, "ledger_events", ["site_id", "item", "occurred_at"])
