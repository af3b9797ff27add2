"""Central's tables, as SQLAlchemy Core, one module per area, all on one ``metadata``.

Core rather than the ORM: ingest is set-oriented (look up a batch's ids in one query,
insert with executemany, upsert balances per key), and rows never live long enough in
Python to need identity tracking. The Alembic migrations in ``central_api/migrations``
create exactly this schema; a test compares the two.

A new area gets its own module here, imported below so that ``metadata`` (which Alembic
and that test read) holds its tables. Every name is importable from the package itself
(``from central_api.models import ledger_events``) as well as from its area's module.
"""

from __future__ import annotations

from central_api.models.audit import audit_head, audit_log
from central_api.models.auth import auth_signing_key, site_credentials
from central_api.models.base import (
    MicroUnits,
    from_micro_units,
    metadata,
    to_micro_units,
    to_micro_units_many,
)
from central_api.models.feed import change_feed, feed_counter
from central_api.models.feedback import feedback
from central_api.models.inventory import (
    stock_count_entries,
    stock_count_lines,
    stock_counts,
    stock_document_lines,
    stock_documents,
    transfer_exceptions,
    transfer_lines,
    transfer_lots,
    transfer_orders,
)
from central_api.models.items import item_barcodes, items
from central_api.models.ledger import (
    central_events,
    central_stream_state,
    ledger_events,
    refused_events,
    site_sync_state,
)
from central_api.models.master import (
    categories,
    code_sequences,
    idempotency_keys,
    item_site_levels,
    item_units,
    locations,
    partners,
    reference_entries,
    sites,
)
from central_api.models.monitoring import site_devices, site_status
from central_api.models.people import (
    login_failures,
    roles,
    sessions,
    user_roles,
    user_sites,
    users,
)
from central_api.models.periods import period_close_values, period_closes
from central_api.models.purchasing import (
    edge_qc_decisions,
    purchase_exceptions,
    purchase_order_lines,
    purchase_orders,
    purchase_receipt_lines,
    purchase_receipts,
    purchase_return_lines,
    purchase_returns,
    requisition_lines,
    requisitions,
    supplier_invoice_lines,
    supplier_invoices,
)
from central_api.models.replenishment import alerts, expiry_alert_days, item_site_supply
from central_api.models.sales import (
    credit_note_lines,
    credit_notes,
    customer_payments,
    customer_return_lines,
    customer_returns,
    price_list_lines,
    price_lists,
    retail_sales,
    sales_invoice_lines,
    sales_invoices,
    sales_order_lines,
    sales_orders,
    sales_reservations,
    shipment_lines,
    shipments,
)
from central_api.models.shops import shop_channels
from central_api.models.stock import NO_LOT, stock_balances, stock_snapshot_runs, stock_snapshots
from central_api.models.valuation import (
    valuation_entries,
    valuation_layers,
    valuation_pending,
    valuation_state,
)
from central_api.models.webhooks import webhook_deliveries, webhook_subscriptions

__all__ = [
    "NO_LOT",
    "MicroUnits",
    "alerts",
    "audit_head",
    "audit_log",
    "auth_signing_key",
    "categories",
    "central_events",
    "central_stream_state",
    "change_feed",
    "code_sequences",
    "credit_note_lines",
    "credit_notes",
    "customer_payments",
    "customer_return_lines",
    "customer_returns",
    "edge_qc_decisions",
    "expiry_alert_days",
    "feed_counter",
    "feedback",
    "from_micro_units",
    "idempotency_keys",
    "item_barcodes",
    "item_site_levels",
    "item_site_supply",
    "item_units",
    "items",
    "ledger_events",
    "locations",
    "login_failures",
    "metadata",
    "partners",
    "period_close_values",
    "period_closes",
    "price_list_lines",
    "price_lists",
    "purchase_exceptions",
    "purchase_order_lines",
    "purchase_orders",
    "purchase_receipt_lines",
    "purchase_receipts",
    "purchase_return_lines",
    "purchase_returns",
    "reference_entries",
    "refused_events",
    "requisition_lines",
    "requisitions",
    "retail_sales",
    "roles",
    "sales_invoice_lines",
    "sales_invoices",
    "sales_order_lines",
    "sales_orders",
    "sales_reservations",
    "sessions",
    "shipment_lines",
    "shipments",
    "shop_channels",
    "site_credentials",
    "site_devices",
    "site_status",
    "site_sync_state",
    "sites",
    "stock_balances",
    "stock_count_entries",
    "stock_count_lines",
    "stock_counts",
    "stock_document_lines",
    "stock_documents",
    "stock_snapshot_runs",
    "stock_snapshots",
    "supplier_invoice_lines",
    "supplier_invoices",
    "to_micro_units",
    "to_micro_units_many",
    "transfer_exceptions",
    "transfer_lines",
    "transfer_lots",
    "transfer_orders",
    "user_roles",
    "user_sites",
    "users",
    "valuation_entries",
    "valuation_layers",
    "valuation_pending",
    "valuation_state",
    "webhook_deliveries",
    "webhook_subscriptions",
]
