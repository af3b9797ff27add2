"""The ledgers sites push: every movement, each site's watermark, and what central refused.

Written only by ingest (``central_api.services.ingest``), in one transaction per push.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from central_api.models.base import MicroUnits, metadata

# One row per site; locked while a push from that site is ingested.
site_sync_state = Table(
    "site_sync_state",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("acked_through_seq", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Every movement ever pushed, immutable; (site_id, seq) is each site's ledger. Besides
# received_at the columns are exactly LedgerEvent's fields: ingest rebuilds a held event
# from them to tell a replay from a conflict.
ledger_events = Table(
    "ledger_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column(
        "site_id",
        String(32),
        ForeignKey(site_sync_state.c.site_id),
        nullable=False,
    ),
    Column("seq", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("item", String(64), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("location", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("unit_cost", MicroUnits, nullable=True),
    Column("ref", String(128), nullable=True),
    Column("device_id", String(64), nullable=True),
    Column("actor", String(64), nullable=True),
    # The document line the event fulfils (migration 0010): all three or none.
    Column("doc_type", String(32), nullable=True),
    Column("doc_id", String(64), nullable=True),
    Column("doc_line", BigInteger, nullable=True),
    UniqueConstraint("site_id", "seq"),
    # No (site_id, item, occurred_at) index (0036 added one, 0037 dropped it): stock as of a
    # past moment finds an item's events through valuation_entries' own and reads here by
    # primary key (services.reports), so ingest pays no extra index entry per event.
    # Only the events that name a document (migration 0017): ingest pays nothing for the rest.
    Index(
        None,
        "doc_id",
        sqlite_where=text("doc_id IS NOT NULL"),
        postgresql_where=text("doc_id IS NOT NULL"),
    ),
)

# --- central's own stream ----------------------------------------------------------------
#
# Events central books itself, for documents done at headquarters (a receipt entered for
# a site without an edge, a QC release, a purchase return; later write-offs, count
# adjustments, opening stock). Same fields as ``ledger_events``, in a table of their own so
# that a site's stream and its gapless seq (and ingest's hot path) are never touched:
# ``seq`` here is central's own gapless stream per site, taken from
# ``central_stream_state`` in the booking transaction. The ledger of a site is the union
# of both tables (see ``central_api.services.central_events``).
central_stream_state = Table(
    "central_stream_state",
    metadata,
    Column("site_id", String(32), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

central_events = Table(
    "central_events",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("site_id", String(32), ForeignKey(site_sync_state.c.site_id), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("item", String(64), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("location", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("unit_cost", MicroUnits, nullable=True),
    Column("ref", String(128), nullable=True),
    Column("device_id", String(64), nullable=True),
    Column("actor", String(64), nullable=True),
    Column("doc_type", String(32), nullable=True),
    Column("doc_id", String(64), nullable=True),
    Column("doc_line", BigInteger, nullable=True),
    UniqueConstraint("site_id", "seq"),
    Index(None, "doc_id"),
    # Every central booking of a lot, for the recall view (migration 0024).
    Index(None, "item", "lot"),
)

# --- events central refused -----------------------------------------------------------
#
# An event central cannot take (``invalid``: say, a unit its balance is not kept in;
# ``conflict``: its id is held at another seq) still occupies its seq in the site's
# ledger. Recording the refusal here lets the watermark pass it, so one bad event does
# not hold every later one back; the edge parks it as a dead letter and may requeue it.
# A row exists only while its seq is not held: accepting the event deletes it.
refused_events = Table(
    "refused_events",
    metadata,
    Column("site_id", String(32), ForeignKey(site_sync_state.c.site_id), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("first_refused_at", DateTime(timezone=True), nullable=False),
    Column("last_refused_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("site_id", "seq"),
)
