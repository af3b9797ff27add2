"""Purchasing (采购): requisitions, purchase orders and their lines, and the exceptions
receiving raises against them.

Documents are intentions; stock moves only by ledger events. A PO line's ``received_qty``
is a projection of the receipt events that name it (``central_api.services.po_progress``),
kept in the ingest transaction and rebuildable from the ledger. Quantities are in the
item's base unit unless the column says ``order``: a line ordered as 2 箱 of an item
counted in 片 (箱 = 120 片) keeps ``qty`` 2, ``uom`` 箱 and ``base_qty`` 240.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from central_api.models.base import MicroUnits, metadata

# 请购单: a request to buy, approved before it becomes purchase orders.
requisitions = Table(
    "requisitions",
    metadata,
    Column("req_id", String(32), primary_key=True),
    Column("site_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "status", "req_id"),
    Index(None, "site_id", "req_id"),
)

requisition_lines = Table(
    "requisition_lines",
    metadata,
    Column("req_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("supplier_code", String(64), nullable=True),
    Column("expected_date", Date, nullable=True),
    Column("note", String(1000), nullable=False),
    # The PO line it became, once converted.
    Column("po_id", String(32), nullable=True),
    Column("po_line", Integer, nullable=True),
    PrimaryKeyConstraint("req_id", "line_no"),
    ForeignKeyConstraint(["req_id"], ["requisitions.req_id"]),
)

# 采购订单.
purchase_orders = Table(
    "purchase_orders",
    metadata,
    Column("po_id", String(32), primary_key=True),
    Column("supplier_code", String(64), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("approved_by", String(100), nullable=True),
    Column("approved_at", DateTime(timezone=True), nullable=True),
    Column("sent_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "status", "po_id"),
    Index(None, "site_id", "po_id"),
    Index(None, "supplier_code", "po_id"),
    Index(None, "created_at"),
)

purchase_order_lines = Table(
    "purchase_order_lines",
    metadata,
    Column("po_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("base_uom", String(16), nullable=False),
    # Financial: price per ordered unit, before tax; tax as a fraction (0.13).
    Column("unit_price", MicroUnits, nullable=True),
    Column("tax_rate", MicroUnits, nullable=True),
    Column("expected_date", Date, nullable=True),
    Column("over_tolerance", MicroUnits, nullable=False),
    Column("under_tolerance", MicroUnits, nullable=False),
    Column("received_qty", MicroUnits, nullable=False),
    # Progress beyond "received" (migration 0011), all in the base unit and kept by the
    # same projection: in stock (accepted), in quarantine, returned to the supplier,
    # and invoiced (matched or approved invoices).
    Column("accepted_qty", MicroUnits, nullable=False),
    Column("quarantined_qty", MicroUnits, nullable=False),
    Column("returned_qty", MicroUnits, nullable=False),
    Column("invoiced_qty", MicroUnits, nullable=False),
    Column("req_id", String(32), nullable=True),
    Column("req_line", Integer, nullable=True),
    PrimaryKeyConstraint("po_id", "line_no"),
    ForeignKeyConstraint(["po_id"], ["purchase_orders.po_id"]),
)

# 例外: what receiving found that a person must look at (an over-receipt, a receipt
# against a line that does not exist or a PO that is closed). Facts are never refused.
purchase_exceptions = Table(
    "purchase_exceptions",
    metadata,
    Column("exception_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("po_id", String(64), nullable=True),
    Column("line_no", BigInteger, nullable=True),
    Column("event_id", String(36), nullable=True),
    Column("qty", MicroUnits, nullable=True),
    Column("detail", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("resolved_by", String(100), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolution", String(1000), nullable=True),
    Index(None, "status", "exception_id"),
    Index(None, "po_id"),
)

# 采购入库 entered at central (a site without an edge). Its lines' stock moves are events
# of central's own stream (``central_events``) naming the PO line.
purchase_receipts = Table(
    "purchase_receipts",
    metadata,
    Column("receipt_id", String(32), primary_key=True),
    Column("po_id", String(32), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("note", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "po_id"),
    Index(None, "site_id", "receipt_id"),
)

purchase_receipt_lines = Table(
    "purchase_receipt_lines",
    metadata,
    Column("receipt_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("po_line", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("base_uom", String(16), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("location", String(64), nullable=False),
    # accepted | quarantine | released | rejected
    Column("qc_status", String(16), nullable=False),
    Column("qc_by", String(100), nullable=True),
    Column("qc_at", DateTime(timezone=True), nullable=True),
    Column("qc_reason", String(1000), nullable=True),
    PrimaryKeyConstraint("receipt_id", "line_no"),
    ForeignKeyConstraint(["receipt_id"], ["purchase_receipts.receipt_id"]),
)

# QC at central of a carton an edge booked into quarantine (migration 0017): one decision
# per edge event, the carton released or rejected whole; the moves are central events.
edge_qc_decisions = Table(
    "edge_qc_decisions",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("site_id", String(32), nullable=False),
    Column("po_id", String(32), nullable=False),
    Column("verdict", String(16), nullable=False),  # released | rejected
    Column("location", String(64), nullable=True),
    Column("reason", String(1000), nullable=False),
    Column("decided_by", String(100), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Index(None, "po_id"),
)

# 采购退货: goods sent back to the supplier, each line against a PO line.
purchase_returns = Table(
    "purchase_returns",
    metadata,
    Column("return_id", String(32), primary_key=True),
    Column("po_id", String(32), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Index(None, "po_id"),
)

purchase_return_lines = Table(
    "purchase_return_lines",
    metadata,
    Column("return_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("po_line", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("lot", String(40), nullable=True),
    Column("location", String(64), nullable=False),
    PrimaryKeyConstraint("return_id", "line_no"),
    ForeignKeyConstraint(["return_id"], ["purchase_returns.return_id"]),
)

# 发票核对: a supplier's invoice against one PO, matched three ways line by line.
supplier_invoices = Table(
    "supplier_invoices",
    metadata,
    Column("invoice_id", String(32), primary_key=True),
    Column("invoice_no", String(64), nullable=False),
    Column("supplier_code", String(64), nullable=False),
    Column("po_id", String(32), nullable=False),
    Column("site_id", String(32), nullable=False),
    # matched | held | approved | disputed
    Column("status", String(16), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index(None, "po_id"),
    Index(None, "status", "invoice_id"),
    UniqueConstraint("supplier_code", "invoice_no"),
)

supplier_invoice_lines = Table(
    "supplier_invoice_lines",
    metadata,
    Column("invoice_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("po_line", Integer, nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("unit_price", MicroUnits, nullable=False),
    Column("tax_rate", MicroUnits, nullable=False),
    Column("amount", MicroUnits, nullable=False),
    # The unit of qty and unit_price; NULL: the PO line's unit (migration 0023).
    Column("uom", String(16), nullable=True),
    # What the match found (the PO's side at the time of matching).
    Column("po_price", MicroUnits, nullable=True),
    Column("accepted_qty", MicroUnits, nullable=False),
    Column("price_diff", MicroUnits, nullable=True),
    Column("qty_diff", MicroUnits, nullable=False),
    Column("amount_diff", MicroUnits, nullable=True),
    Column("outcome", String(64), nullable=False),
    PrimaryKeyConstraint("invoice_id", "line_no"),
    ForeignKeyConstraint(["invoice_id"], ["supplier_invoices.invoice_id"]),
)
