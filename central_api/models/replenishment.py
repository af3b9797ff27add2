"""Replenishment (补货) and the alerts inbox: what a site needs to reorder, and one place
where every alert and exception waits for a person.

* ``item_site_supply`` completes ``item_site_levels`` (safety stock, reorder point and
  quantity, which reach the edge) with what only central plans with: the lead time and the
  preferred supplier of an item at a site. Both are optional: the supplier's own lead time
  (``partners.lead_time_days``) and the supplier of the item's last purchase order are the
  fallbacks (``docs/replenishment.md``).
* ``expiry_alert_days``: the days-before-expiry bands of a category ("30,60,90"); a category
  without a row inherits its parent's, and the default is 30/60/90.
* ``alerts`` is the inbox: stock alerts central raises itself (below safety stock, at the
  reorder point, negative stock, a lot near expiry) and a mirror of the exceptions other
  modules raise (purchase receiving, transfer arrival), each with an owner and a
  resolution. A stock alert is *cleared* by the stock itself (``cleared_at``) and
  *resolved* by a person; at most one uncleared stock alert exists per key.
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

item_site_supply = Table(
    "item_site_supply",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("lead_time_days", Integer, nullable=True),
    Column("supplier_code", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "item_code"),
)

expiry_alert_days = Table(
    "expiry_alert_days",
    metadata,
    Column("category_code", String(32), primary_key=True),
    Column("days", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    # ``stock`` (raised here), ``purchase_exception`` or ``transfer_exception`` (mirrored),
    # ``edge_pick`` (a short pick an edge reported, ``source_id`` its id), ``edge_return``
    # (an edge's return event beyond or outside its customer return, ``source_id`` its id).
    Column("source", String(24), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("qty", MicroUnits, nullable=True),
    Column("threshold", MicroUnits, nullable=True),
    Column("detail", String(1000), nullable=False),
    # When the condition began (the crossing event's time at the edge), when central raised
    # the alert, and when the stock itself ended the condition.
    Column("since_at", DateTime(timezone=True), nullable=True),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("cleared_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),
    Column("owner", String(100), nullable=True),
    Column("resolution", String(1000), nullable=True),
    Column("resolved_by", String(100), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "status", "alert_id"),
    Index(None, "site_id", "item_code"),
    Index(None, "source", "source_id"),
    # One uncleared stock alert per key: a push raising it twice would be a bug.
    Index(
        "ix_alerts_active_key",
        "kind",
        "site_id",
        "item_code",
        "location",
        "lot",
        unique=True,
        sqlite_where=text("cleared_at IS NULL AND source = 'stock'"),
        postgresql_where=text("cleared_at IS NULL AND source = 'stock'"),
    ),
    # The same for the operations alerts central's monitor raises (sync lag, outbox depth,
    # a device down, disk low): two processes checking at once cannot raise one twice.
    Index(
        "ix_alerts_active_ops",
        "kind",
        "site_id",
        "item_code",
        "location",
        "lot",
        unique=True,
        sqlite_where=text("cleared_at IS NULL AND source = 'ops'"),
        postgresql_where=text("cleared_at IS NULL AND source = 'ops'"),
    ),
)
