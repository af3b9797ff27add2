"""What each site's edge last said about itself: outbox depth and device states.

Central learns a site's ledger from its pushes, but nothing about the devices or about
what waits in the edge's outbox: an edge pushes only when it has events. Since contract
additions are optional (``docs/operations.md``, "Upgrade"), an edge that knows how sends
``POST /api/v1/sync/status`` every minute or so; the latest report is kept here, one row
per site, and one row per device with the time its current state began (central's
clock), so a threshold can say "disconnected for 10 minutes" whatever the edge's clock.

Nothing here is history: a report replaces the last one (the audit log keeps pushes, not
heartbeats). The alerts these feed live in ``alerts`` with ``source = 'ops'``.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, PrimaryKeyConstraint, String, Table

from central_api.models.base import metadata

site_status = Table(
    "site_status",
    metadata,
    Column("site_id", String(32), primary_key=True),
    # The edge's own clock when it made the report, and central's when it arrived.
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("outbox_depth", BigInteger, nullable=False),
    Column("dead_letters", BigInteger, nullable=False),
)

site_devices = Table(
    "site_devices",
    metadata,
    Column("site_id", String(32), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    # When central first heard the device in its current state (kept while it stays so).
    Column("since_at", DateTime(timezone=True), nullable=False),
    Column("last_error", String(300), nullable=True),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "device_id"),
)
