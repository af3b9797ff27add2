"""Valuation entries: the (site, item) order index without the event id.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

Every push inserts one ``valuation_entries`` row per event, and the index that finds a
(site, item)'s movements in ``occurred_at`` order takes each insert at a random place (one
per (site, item) touched). Its key was (site_id, item, occurred_at, event_id); without the
36-character event id the entries are about half as wide, and inserting a push's entries
cost about 30 % less CPU on SQLite (``docs/performance.md``, "Valuation, faster"). The
event id only breaks ties between movements of one (site, item) at the same microsecond,
which the database sorts among themselves after the index's range.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "ix_valuation_entries_site_id_item_occurred_at_event_id"
_NEW = "ix_valuation_entries_site_id_item_occurred_at"


def upgrade() -> None:
    op.create_index(_NEW, "valuation_entries", ["site_id", "item", "occurred_at"])
    op.drop_index(_OLD, table_name="valuation_entries")


def downgrade() -> None:
    op.create_index(_OLD, "valuation_entries", ["site_id", "item", "occurred_at", "event_id"])
    op.drop_index(_NEW, table_name="valuation_entries")
