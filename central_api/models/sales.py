"""Sales (销售): price lists, sales orders and their lines, and lot reservations.

A reservation is a row, not a counter on the balance: available-to-promise is then a
query (sellable on hand − reserved), a cancel deletes rows, and a later shipment event
that names an SO line (``doc_type`` ``sales_order``, ``doc_id``, ``doc_line``) can consume
exactly the rows of that line and lot. Quantities are in the item's base unit unless the
column says otherwise, as on purchase order lines.
"""

from __future__ import annotations

from sqlalchemy import (
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
from central_api.models.ledger import ledger_events

# 价目表: the prices a customer whose ``partners.price_list`` names it is offered.
price_lists = Table(
    "price_lists",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Financial: a price per ``uom`` of the item, before tax, valid within [from, to].
price_list_lines = Table(
    "price_list_lines",
    metadata,
    Column("code", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("uom", String(16), nullable=False),
    Column("price", MicroUnits, nullable=False),
    Column("valid_from", Date, nullable=True),
    Column("valid_to", Date, nullable=True),
    PrimaryKeyConstraint("code", "line_no"),
    ForeignKeyConstraint(["code"], ["price_lists.code"]),
    Index(None, "code", "item_code"),
)

# 销售订单.
sales_orders = Table(
    "sales_orders",
    metadata,
    Column("so_id", String(32), primary_key=True),
    Column("customer_code", String(64), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("note", String(1000), nullable=False),
    # The customer's minimum remaining shelf life for this order (days); the item's own
    # ``min_remaining_days`` applies too, the larger wins.
    Column("min_remaining_days", Integer, nullable=True),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_by", String(100), nullable=True),
    Column("confirmed_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # An order placed by an online shop (POST /integrations/orders): the shop's channel
    # name and its own order id, unique together so it is made exactly once, and the
    # SHA-256 of the request that made it, so a retry is told from a different order.
    Column("channel", String(64), nullable=True),
    Column("external_id", String(128), nullable=True),
    Column("import_sha256", String(64), nullable=True),
    Index(None, "status", "so_id"),
    Index(None, "site_id", "so_id"),
    Index(None, "customer_code", "status"),
    Index(None, "channel", "external_id", unique=True),
)

sales_order_lines = Table(
    "sales_order_lines",
    metadata,
    Column("so_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("base_qty", MicroUnits, nullable=False),
    Column("base_uom", String(16), nullable=False),
    # Financial: price per ordered unit, before tax; tax as a fraction (0.13).
    Column("unit_price", MicroUnits, nullable=False),
    Column("tax_rate", MicroUnits, nullable=False),
    Column("requested_date", Date, nullable=True),
    Column("shipped_qty", MicroUnits, nullable=False),
    PrimaryKeyConstraint("so_id", "line_no"),
    ForeignKeyConstraint(["so_id"], ["sales_orders.so_id"]),
)

# One lot held for one SO line at the order's site, in the item's base unit.
sales_reservations = Table(
    "sales_reservations",
    metadata,
    Column("so_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("lot", String(40), nullable=False),
    Column("expiry", Date, nullable=True),
    Column("qty", MicroUnits, nullable=False),
    PrimaryKeyConstraint("so_id", "line_no", "lot"),
    ForeignKeyConstraint(
        ["so_id", "line_no"], ["sales_order_lines.so_id", "sales_order_lines.line_no"]
    ),
    Index(None, "site_id", "item_code", "lot"),
)

# The (item, lot) → expiry lookup reservation needs reads the ledger through this index
# rather than keeping a projection (see docs/sales.md, "Lot expiry").
Index(
    "ix_ledger_events_item_lot_expiry",
    ledger_events.c.item,
    ledger_events.c.lot,
    ledger_events.c.expiry,
)

# 发货: goods sent against one sales order from its site, booked at once as ``issue``
# events in central's own stream, each naming its SO line (one shipment line per lot and
# location taken). The SO lines' ``shipped_qty`` and reservations move by the events
# (``services.so_progress``), not by this table.
shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", String(32), primary_key=True),
    Column("so_id", String(32), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("customer_code", String(64), nullable=False),
    Column("tracking_no", String(64), nullable=True),
    Column("note", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("sscc", String(18), nullable=True),
    ForeignKeyConstraint(["so_id"], ["sales_orders.so_id"]),
    Index(None, "so_id"),
    Index(None, "site_id", "shipment_id"),
    Index(None, "sscc", unique=True),
)

shipment_lines = Table(
    "shipment_lines",
    metadata,
    Column("shipment_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("so_line", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("location", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    PrimaryKeyConstraint("shipment_id", "line_no"),
    ForeignKeyConstraint(["shipment_id"], ["shipments.shipment_id"]),
)

# 退货: a return authorisation against shipped SO lines; received into the site's
# quarantine location, then each line restocked to a location or scrapped with a reason.
customer_returns = Table(
    "customer_returns",
    metadata,
    Column("return_id", String(32), primary_key=True),
    Column("so_id", String(32), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("customer_code", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", String(1000), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("received_by", String(100), nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["so_id"], ["sales_orders.so_id"]),
    Index(None, "so_id"),
    Index(None, "site_id", "return_id"),
)

customer_return_lines = Table(
    "customer_return_lines",
    metadata,
    Column("return_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("so_line", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("expiry", Date, nullable=True),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    # What arrived (migration 0031): the whole qty at central, carton by carton at an edge.
    Column("received_qty", MicroUnits, nullable=False),
    # Where the goods are: the quarantine location once received, then where restocked.
    Column("location", String(64), nullable=True),
    # pending (authorised or received, not decided), restocked or scrapped.
    Column("disposition", String(16), nullable=False),
    Column("reason_code", String(32), nullable=True),
    Column("decided_by", String(100), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("return_id", "line_no"),
    ForeignKeyConstraint(["return_id"], ["customer_returns.return_id"]),
)

# 销售发票: one per shipment (unique), at the SO lines' prices; due by the customer's
# payment terms. Financial: every amount.
sales_invoices = Table(
    "sales_invoices",
    metadata,
    Column("invoice_id", String(32), primary_key=True),
    Column("shipment_id", String(32), nullable=False, unique=True),
    Column("so_id", String(32), nullable=False),
    Column("customer_code", String(64), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("invoice_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("amount", MicroUnits, nullable=False),
    Column("tax_amount", MicroUnits, nullable=False),
    Column("gross_amount", MicroUnits, nullable=False),
    Column("paid_amount", MicroUnits, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["shipment_id"], ["shipments.shipment_id"]),
    Index(None, "customer_code", "status"),
    Index(None, "so_id"),
    Index(None, "site_id", "invoice_id"),
)

sales_invoice_lines = Table(
    "sales_invoice_lines",
    metadata,
    Column("invoice_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("shipment_line", Integer, nullable=False),
    Column("so_line", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    # Financial: price per base unit before tax, tax as a fraction, amounts in cents.
    Column("unit_price", MicroUnits, nullable=False),
    Column("tax_rate", MicroUnits, nullable=False),
    Column("amount", MicroUnits, nullable=False),
    Column("tax_amount", MicroUnits, nullable=False),
    PrimaryKeyConstraint("invoice_id", "line_no"),
    ForeignKeyConstraint(["invoice_id"], ["sales_invoices.invoice_id"]),
)

# 收款: a payment received against one invoice (partial ones are normal).
customer_payments = Table(
    "customer_payments",
    metadata,
    Column("payment_id", String(32), primary_key=True),
    Column("invoice_id", String(32), nullable=False),
    Column("customer_code", String(64), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("amount", MicroUnits, nullable=False),
    Column("received_on", Date, nullable=False),
    Column("method", String(32), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["invoice_id"], ["sales_invoices.invoice_id"]),
    Index(None, "invoice_id"),
)

# 红字发票 / credit notes: money taken off one sales invoice, for goods a customer returned
# (quantities of invoice lines at their invoiced price) or a price correction (amounts per
# invoice line). What is still owed on the invoice is gross - paid - credited; a credit
# note is never more than that (money owed back to a customer is a refund, not done here).
credit_notes = Table(
    "credit_notes",
    metadata,
    Column("credit_id", String(32), primary_key=True),
    Column("invoice_id", String(32), nullable=False),
    Column("customer_code", String(64), nullable=False),
    Column("site_id", String(32), nullable=False),
    Column("credit_date", Date, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("return_id", String(32), nullable=True),
    Column("reason", String(1000), nullable=False),
    Column("amount", MicroUnits, nullable=False),
    Column("tax_amount", MicroUnits, nullable=False),
    Column("gross_amount", MicroUnits, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["invoice_id"], ["sales_invoices.invoice_id"]),
    Index(None, "invoice_id"),
    Index(None, "site_id", "credit_id"),
)

credit_note_lines = Table(
    "credit_note_lines",
    metadata,
    Column("credit_id", String(32), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("invoice_line", Integer, nullable=False),
    Column("item_code", String(64), nullable=False),
    # A return credits a quantity (in the invoice line's unit); a price correction none.
    Column("qty", MicroUnits, nullable=True),
    Column("uom", String(16), nullable=False),
    Column("amount", MicroUnits, nullable=False),
    Column("tax_amount", MicroUnits, nullable=False),
    PrimaryKeyConstraint("credit_id", "line_no"),
    ForeignKeyConstraint(["credit_id"], ["credit_notes.credit_id"]),
)

# 零售: a store's counter sales and refunds as their edge events arrive (projection
# ``retail``, central_api.services.retail): one row per ``sale`` / ``return`` event naming a
# ``retail_receipt`` line, keyed by that event, so the cost of goods valuation gives the same
# event (``valuation_entries.event_id``) sits next to its revenue. Financial: unit_price and
# amount (signed revenue: a sale adds, a refund takes back), in the till's money, no tax
# split (the counter price is what the customer pays).
retail_sales = Table(
    "retail_sales",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("site_id", String(32), nullable=False),
    Column("receipt", String(64), nullable=False),
    Column("line_no", Integer, nullable=False),
    Column("refund", String(64), nullable=True),
    Column("item_code", String(64), nullable=False),
    Column("lot", String(40), nullable=True),
    Column("qty", MicroUnits, nullable=False),
    Column("uom", String(16), nullable=False),
    Column("unit_price", MicroUnits, nullable=False),
    Column("amount", MicroUnits, nullable=False),
    Column("payment", String(16), nullable=False),
    Column("sold_at", DateTime(timezone=True), nullable=False),
    Index(None, "site_id", "sold_at"),
    Index(None, "receipt"),
)
