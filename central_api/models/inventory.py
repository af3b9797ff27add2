"""Inventory control (库存): other receipts and issues, write-offs, transfers, stock counts.

Documents are intentions; stock moves only by ledger events (central's own stream for the
commands here, the edges' streams later). Quantities are in the item's base unit unless a
column says otherwise, as on purchase order lines.

* ``stock_documents`` holds the three single-step documents, told apart by ``kind``:
  其它入库 (``other_receipt``), 其它出库 (``other_issue``) and 报损 (``write_off``). They share
  every column (a site, a reason code, lines of location/item/lot/qty) and differ only in
  the event kind they book and whether a person must approve first, so one table and one
  command frame serve all three.
* ``transfer_lots`` is a **projection**: what each transfer line shipped and received per
  lot, summed from the ``transfer_out`` / ``transfer_in`` events that name the line, edge or
  central alike. In transit is ``shipped − received − lost`` (``lost``: a short arrival a
  person resolved as lost); nothing else stores it.
* ``stock_count_lines`` keep the frozen snapshot (``expected_qty``), the balance when the
  line was counted (``system_qty``: the snapshot plus what moved since) and the count; the
  variance is ``counted − system``, so a movement during the count is never a variance.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
)

from central_api.models.base import MicroUnits, metadata

# 其它入库 / 其它出库 / 报损: a site, a reason code and lines; booked when posted.
stock_documents = Table(
    "stock_documents",
    metadata,
    Column("doc_id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("reason_code", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("value", MicroUnits, nullable=True),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("decision_note", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # ``<site> <edge write-off number>`` when an edge booked it (migration 0026).
    Column("edge_ref", String(128), nullable=True),
    Index(None, "kind", "doc_id"),
    Index(None, "site_id", "doc_id"),
)

stock_document_lines = Table(
    "stock_document_lines",
    metadata,
    Column("doc_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("location", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("base_uom", String(16), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("unit_cost", MicroUnits, nullable=True),
    PrimaryKeyConstraint("doc_id", "line_no"),
    ForeignKeyConstraint(["doc_id"], ["stock_documents.doc_id"]),
)

# 调拨单: from one site to another.
transfer_orders = Table(
    "transfer_orders",
    metadata,
    Column("transfer_id", String(32), primary_key=True),
    Column("from_site", String(32), nullable=False),
    Column("to_site", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("approved_by", String(100), nullable=True),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("shipped_at", DateTime(timezone=True), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "status", "transfer_id"),
    Index(None, "from_site", "transfer_id"),
    Index(None, "to_site", "transfer_id"),
)

transfer_lines = Table(
    "transfer_lines",
    metadata,
    Column("transfer_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("base_uom", String(16), nullable=False),
    PrimaryKeyConstraint("transfer_id", "line_no"),
    ForeignKeyConstraint(["transfer_id"], ["transfer_orders.transfer_id"]),
)

# Projection of the transfer events per line and lot ('' = no lot).
transfer_lots = Table(
    "transfer_lots",
    metadata,
    Column("transfer_id", String(32), nullable=False),
    Column("line_no", BigInteger, nullable=False),
    Column("lot", String(40), nullable=False),
    Column("expiry", Date, nullable=True),
    Column("shipped_qty", MicroUnits, nullable=False),
    Column("received_qty", MicroUnits, nullable=False),
    Column("lost_qty", MicroUnits, nullable=False),
    PrimaryKeyConstraint("transfer_id", "line_no", "lot"),
)

# A difference on arrival (short, over, wrong lot), with both quantities, for a person.
transfer_exceptions = Table(
    "transfer_exceptions",
    metadata,
    Column("exception_id", Integer, primary_key=True, autoincrement=True),
    Column("transfer_id", String(32), nullable=False),
    Column("line_no", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("shipped_qty", MicroUnits, nullable=False),
    Column("received_qty", MicroUnits, nullable=False),
    Column("status", String(16), nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("resolved_by", String(100), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolution", String(1000), nullable=True),
    Index(None, "transfer_id"),
    Index(None, "status", "exception_id"),
)

# 盘点: a session for a site, or a range of its location codes, frozen at ``snapshot_at``.
stock_counts = Table(
    "stock_counts",
    metadata,
    Column("count_id", String(32), primary_key=True),
    Column("site_id", String(32), nullable=False),
    Column("location_from", String(64), nullable=True),
    Column("location_to", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("snapshot_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("approved_by", String(100), nullable=True),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "site_id", "count_id"),
)

stock_count_lines = Table(
    "stock_count_lines",
    metadata,
    Column("count_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("location", String(64), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("expected_qty", MicroUnits, nullable=False),
    Column("system_qty", MicroUnits, nullable=True),
    Column("counted_qty", MicroUnits, nullable=True),
    Column("first_qty", MicroUnits, nullable=True),
    Column("recount", Boolean, nullable=False),
    Column("counted_by", String(100), nullable=True),
    Column("counted_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("count_id", "line_no"),
    ForeignKeyConstraint(["count_id"], ["stock_counts.count_id"]),
    Index(None, "count_id", "location", "item_code", "lot", unique=True),
)

stock_count_entries = Table(
    "stock_count_entries",
    metadata,
    # An entry an edge uploaded (``POST /sync/count-entries``), by the id the edge gave
    # it: a replay is answered as before and changes nothing.
    Column("entry_id", String(36), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("count_id", String(32), nullable=True),
    Column("refused", String(300), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("entry_id"),
    ForeignKeyConstraint(["count_id"], ["stock_counts.count_id"]),
)
