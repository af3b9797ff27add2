"""Valuation entries: room on each page, so a late event's rewrite is a HOT update (PostgreSQL).

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-05

A late event re-values every later entry of its (site, item): 50,000 UPDATEs for the busy
key of ``bench/central.py``. The columns it rewrites (``in_cost`` and the results) are in
none of the table's indexes (the primary key on ``event_id``, (site_id, item,
occurred_at), the partial one on ``link``), so PostgreSQL can write each new row version
on its own page without a new entry in any index (a heap-only tuple), if the page has
room. At the default ``fillfactor`` of 100 the pages are full and every UPDATE also
inserts into all three indexes. With 70, the late push on the 300,000-row build took
about a third of the time, an ordinary push no longer, and the table 44 % more heap
(``docs/performance.md``, "fillfactor on valuation_entries").

``ALTER TABLE ... SET (fillfactor)`` changes only pages written from now on (new entries,
and rows a late event moves): existing pages stay full until the table is rewritten, which
this migration does not do, since ``VACUUM FULL`` (or ``CLUSTER``) holds an exclusive lock
on the table for as long as it runs. An operator who wants the room on old pages too runs
``VACUUM FULL valuation_entries`` in a quiet hour. SQLite has no such setting: nothing to
do there. Downgrade sets it back to the default.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0039"
down_revision: str | None = "0038"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE valuation_entries SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE valuation_entries RESET (fillfactor)")
