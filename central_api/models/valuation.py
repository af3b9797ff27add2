"""Valuation: what the stock of each (site, item) is worth, and what each movement cost.

A projection of the ledger kept by ``central_api.services.valuation`` in the push's own
transaction (and in every booking of central's own events). Financial through and
through: only roles with the financial field group read it.

* ``valuation_state``: per (site, item), the quantity in the item's base unit, its value,
  the last known unit cost (what a shortfall is issued at) and the order key of the latest
  movement valued, which tells an in-order event from a late one without a query.
* ``valuation_entries``: per ledger event, the inputs it was valued with (base quantity,
  the unit cost an inbound event came in at and where that cost came from) and the results
  (value in, cost of goods out, the correction booked when a receipt fills negative stock,
  the quantity issued without stock) and the running state after it.
* ``valuation_layers``: the open FIFO layers of an item valued first in, first out.
* ``valuation_pending``: re-valuations of a site that a transaction of another site
  recorded and left to a transaction of that site alone (a transfer's cost to carry into
  the receiving site); a row is deleted by the transaction that settles it. Also a
  (site, item) that *lags* behind a late event with a long tail (``link``
  ``valuation_tail:<item>``, the first entry whose results may be stale in
  ``since_at``/``since_event_id``), settled in chunks right after the push's commit.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)

from central_api.models.base import MicroUnits, metadata

valuation_state = Table(
    "valuation_state",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("item", String(64), nullable=False),
    Column("method", String(16), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("value", MicroUnits, nullable=False),
    Column("last_cost", MicroUnits, nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("last_event_id", String(36), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "item"),
)

valuation_entries = Table(
    "valuation_entries",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("site_id", String(32), nullable=False),
    Column("item", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    # Inputs, fixed when the event is first valued.
    Column("qty", MicroUnits, nullable=False),
    Column("in_cost", MicroUnits, nullable=True),
    Column("cost_source", String(16), nullable=False),
    Column("link", String(128), nullable=True),
    # Results, rewritten whenever an earlier event re-values the (site, item).
    Column("in_value", MicroUnits, nullable=False),
    Column("cogs", MicroUnits, nullable=False),
    Column("variance", MicroUnits, nullable=False),
    Column("shortfall", MicroUnits, nullable=False),
    Column("qty_after", MicroUnits, nullable=False),
    Column("value_after", MicroUnits, nullable=False),
    Column("last_cost_after", MicroUnits, nullable=False),
    # PostgreSQL: fillfactor 70 (migration 0039), room on each page so that a late
    # event's rewrite of the results (no indexed column) is a heap-only update.
    # A (site, item)'s movements in order; ties at one instant are few and sorted by
    # event_id after the range (migration 0018: a narrower key, cheaper inserts).
    Index(None, "site_id", "item", "occurred_at"),
    # Only a transfer's entries have a link: a partial index costs the other inserts nothing.
    Index(
        None,
        "link",
        sqlite_where=text("link IS NOT NULL"),
        postgresql_where=text("link IS NOT NULL"),
    ),
)

valuation_layers = Table(
    "valuation_layers",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("item", String(64), nullable=False),
    Column("layer_no", Integer, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("value", MicroUnits, nullable=False),
    PrimaryKeyConstraint("site_id", "item", "layer_no"),
)

valuation_pending = Table(
    "valuation_pending",
    metadata,
    # Insert-only under a fresh id: recording one never waits for another transaction
    # (no unique key to conflict on); deleting one is done only under its site's lock.
    Column("pending_id", String(36), primary_key=True),
    Column("site_id", String(32), nullable=False),
    Column("link", String(128), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    # A tail's boundary (migration 0040); a transfer's row leaves them empty.
    Column("since_at", DateTime(timezone=True), nullable=True),
    Column("since_event_id", String(36), nullable=True),
    Index(None, "site_id"),
)

__all__ = ["valuation_entries", "valuation_layers", "valuation_pending", "valuation_state"]
