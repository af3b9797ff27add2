"""The ledger: an index on (site_id, item, occurred_at) for stock as of a past moment.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-05

Stock of an item as of a past moment is summed from the ledger by ``occurred_at``
(``services.reports.stock_on_hand`` with ``as_of``). Without this index a site's events
were read through ``(site_id, seq)`` and filtered by item: on 5,000,000 rows over 200
sites that is 25,000 rows read for a dozen used, 111 ms at the median on SQLite against
an aim of 50 ms (``bench/central.py``, ``docs/performance.md``, "The central at
5,000,000 rows"). The price is one more index entry per ingested event.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0036"
down_revision: str | None = "0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_ledger_events_site_id_item_occurred_at"


def upgrade() -> None:
    op.create_index(_NAME, "ledger_events", ["site_id", "item", "occurred_at"])


def downgrade() -> None:
    op.drop_index(_NAME, table_name="ledger_events")
