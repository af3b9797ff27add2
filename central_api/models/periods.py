"""Period close (月结): which months are closed, and what stock was worth when they closed.

``period_closes`` holds one row per month ever closed (``YYYY-MM``). A reopened month keeps
its row (``status = 'reopened'``, who and why) so that the history of closes stays; closing
it again makes it ``closed`` once more. The months closed form a prefix of time: only the
month after the last closed one may be closed, and only the last closed one reopened, so
"closed through" is one date (the end of the last closed month), the lock date other
systems call it.

``period_close_values`` keeps, per site, the stock quantity and value at the month's end
as valuation saw it at the moment of closing: the figures finance signed off. Facts are
never refused, so a late edge event dated inside a closed month still moves its
valuation; the snapshot is how the difference stays visible (docs/inventory.md).
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, PrimaryKeyConstraint, String, Table

from central_api.models.base import MicroUnits, metadata

period_closes = Table(
    "period_closes",
    metadata,
    Column("period", String(7), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("closed_by", String(100), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=False),
    Column("reopened_by", String(100), nullable=True),
    Column("reopened_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
)

period_close_values = Table(
    "period_close_values",
    metadata,
    Column("period", String(7), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("value", MicroUnits, nullable=False),
    Column("items", Integer, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("period", "site_id"),
)
