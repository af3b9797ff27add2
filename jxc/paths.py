"""Where central serves what the other parts call: each URL path defined once, here.

Central declares its routes with these paths and the edge sends its requests to them, so
a path changed here changes on both sides at once, as a field of :mod:`jxc.contract`
does. Every path is absolute from central's root; a central mounted below a prefix
(``https://hq.example/jxc``) has that prefix in the base URL the edge is given.
"""

from __future__ import annotations

API_ROOT = "/api/v1"
"""The versioned API; everything but the health check is below it."""

HEALTH = "/healthz"
"""Liveness, database reachability and versions, for load balancers and deploy checks."""

READY = "/readyz"
"""Readiness: the database answers and its schema is at this central's newest migration."""

METRICS = "/metrics"
"""Prometheus metrics of the process (central and the edge's status page alike)."""

SYNC_TOKEN = f"{API_ROOT}/sync/token"
"""``POST``: a site trades its secret for a short-lived bearer token."""
SYNC_EVENTS = f"{API_ROOT}/sync/events"
"""``POST``: a site pushes a contiguous run of its ledger."""
SYNC_ACK = f"{API_ROOT}/sync/ack"
"""``GET ?site_id=``: how far central holds the site's ledger."""
SYNC_REFUSED = f"{API_ROOT}/sync/refused"
"""``GET ?site_id=``: the site's events central refused and recorded."""
SYNC_STATUS = f"{API_ROOT}/sync/status"
"""``POST``: a site reports its outbox depth and device states (the latest is kept)."""
SYNC_CHANGES = f"{API_ROOT}/sync/changes"
"""``GET ?site_id=&cursor=&limit=``: the master-data changes for the site after a cursor."""
SYNC_PICK_SHORTS = f"{API_ROOT}/sync/pick-shorts"
"""``POST``: a site reports the order lines its pickers ended short (``jxc.pick_shorts``)."""
SYNC_COUNT_ENTRIES = f"{API_ROOT}/sync/count-entries"
"""``POST``: a site uploads the stock count entries its counters made (idempotent per id)."""

ITEMS = f"{API_ROOT}/items"
"""The item master, ``/{item_code}`` for one item (a ``/`` in a code sent as ``%2F``)."""
CATEGORIES = f"{API_ROOT}/categories"
"""The item category tree and its coding rules, ``/{code}`` for one."""
SITES = f"{API_ROOT}/sites"
"""The site master, ``/{site_id}``; its ``/locations`` and per-item ``/item-levels``."""
PARTNERS = f"{API_ROOT}/partners"
"""Suppliers and customers, ``/{code}`` for one."""
REASON_CODES = f"{API_ROOT}/reason-codes"
PAYMENT_TERMS = f"{API_ROOT}/payment-terms"
TAX_RATES = f"{API_ROOT}/tax-rates"
UNITS = f"{API_ROOT}/units"
LABEL_TEMPLATES = f"{API_ROOT}/label-templates"
"""The reference lists, each ``/{code}`` for one entry."""
REQUISITIONS = f"{API_ROOT}/requisitions"
"""Purchase requisitions (请购单), ``/{req_id}`` and its commands ``/{req_id}/<verb>``."""
PURCHASE_ORDERS = f"{API_ROOT}/purchase-orders"
"""Purchase orders (采购订单), ``/{po_id}`` and its commands ``/{po_id}/<verb>``."""
PURCHASE_EXCEPTIONS = f"{API_ROOT}/purchase-exceptions"
"""What receiving raised against purchase orders (例外), ``/{id}/resolve``."""
PURCHASE_RECEIPTS = f"{API_ROOT}/purchase-receipts"
"""Receipts entered at central (采购入库), ``/{id}`` and QC ``/{id}/release``, ``/reject``."""
PURCHASE_RETURNS = f"{API_ROOT}/purchase-returns"
"""Goods returned to the supplier (采购退货), ``/{id}``."""
SUPPLIER_INVOICES = f"{API_ROOT}/supplier-invoices"
"""Supplier invoices and their three-way match (发票核对), ``/{id}/approve``, ``/dispute``."""
PRICE_LISTS = f"{API_ROOT}/price-lists"
"""Price lists (价目表), ``/{code}`` for one."""
SALES_ORDERS = f"{API_ROOT}/sales-orders"
"""Sales orders (销售订单), ``/{so_id}`` and its commands ``/{so_id}/<verb>``."""
SHIPMENTS = f"{API_ROOT}/shipments"
"""Shipments of sales orders (发货), ``/{id}``, ``/{id}/tracking``, ``/{id}/delivery-note``;
an order's pick list is ``SALES_ORDERS/{so_id}/pick-list``."""
CUSTOMER_RETURNS = f"{API_ROOT}/customer-returns"
"""Customer returns (退货), ``/{id}``, ``/{id}/receive``, ``/restock``, ``/scrap``."""
SALES_INVOICES = f"{API_ROOT}/sales-invoices"
"""Sales invoices from shipments (销售发票), ``/{id}``, ``/{id}/payments`` (收款)."""
RECEIVABLES_AGEING = f"{API_ROOT}/receivables/ageing"
"""``GET ?on=&customer=``: receivables ageing (应收账龄) per customer."""
STOCK_AVAILABLE = f"{API_ROOT}/stock/available"
"""``GET ?site_id=&item=``: available-to-promise per lot (sellable on hand − reserved)."""
STOCK = f"{API_ROOT}/stock"
"""``GET``: balances per (site, location, item, lot), filtered by query parameters."""
OTHER_RECEIPTS = f"{API_ROOT}/other-receipts"
"""Other receipts (其它入库) with a reason code, ``/{id}``."""
OTHER_ISSUES = f"{API_ROOT}/other-issues"
"""Other issues (其它出库) with a reason code, ``/{id}``."""
WRITE_OFFS = f"{API_ROOT}/write-offs"
"""Write-offs (报损), ``/{id}`` and ``/{id}/approve``, ``/reject`` above the value threshold."""
TRANSFERS = f"{API_ROOT}/transfers"
"""Transfer orders (调拨单), ``/{id}`` and its commands ``/{id}/<verb>``."""
TRANSFER_EXCEPTIONS = f"{API_ROOT}/transfer-exceptions"
"""Differences on a transfer's arrival (short, over, wrong lot), ``/{id}/resolve``."""
STOCK_IN_TRANSIT = f"{API_ROOT}/stock/in-transit"
"""``GET``: what is in transit per transfer, item and lot (shipped − received)."""
STOCK_COUNTS = f"{API_ROOT}/stock-counts"
"""Count sessions (盘点), ``/{id}``, its blind ``/{id}/sheet`` and commands ``/{id}/<verb>``."""
COUNT_ACCURACY = f"{API_ROOT}/stock-counts/accuracy"
"""``GET``: count accuracy per site (lines counted right / lines counted)."""
VALUATION = f"{API_ROOT}/valuation"
"""``GET ?site_id=&item=``: stock value per (site, item); ``/entries``: cost per movement."""
REPORTS = f"{API_ROOT}/reports"
"""The report centre (报表中心): ``/stock-on-hand``, ``/movements``, ``/gross-margin``,
``/slow-moving``, ``/expiry``, ``/sync-lag``; each ``?format=json|csv|xlsx``."""
AUDIT = f"{API_ROOT}/audit"
"""``GET``: the audit log, filtered and paged; ``/audit.csv`` exports it (auditors)."""
AUDIT_CSV = f"{API_ROOT}/audit.csv"
REPLENISHMENT_PARAMS = f"{API_ROOT}/replenishment/params"
"""``GET ?site_id=``, ``PUT`` (bulk): safety stock, reorder point and quantity, lead time,
preferred supplier per (site, item)."""
REPLENISHMENT_SUGGESTIONS = f"{API_ROOT}/replenishment/suggestions"
"""``GET ?site_id=``: suggested purchase orders by supplier; ``/draft-po`` makes one a draft."""
EXPIRY_ALERT_DAYS = f"{API_ROOT}/replenishment/expiry-days"
"""Expiry alert bands per category (30/60/90 by default), ``/{category_code}``."""
ALERTS = f"{API_ROOT}/alerts"
"""The alerts and exceptions inbox, ``/{id}``, ``/{id}/assign``, ``/{id}/resolve``,
``/evaluate-expiry``."""
STOCK_NEGATIVE = f"{API_ROOT}/stock/negative"
"""``GET ?site_id=``: balances below zero and since when."""
WEBHOOKS = f"{API_ROOT}/webhooks"
"""Outbound webhook subscriptions (admins), ``/{id}/deliveries`` their log,
``/deliveries/{id}/replay`` a delivery sent again by hand (docs/integrations.md)."""
INTEGRATION_ORDERS = f"{API_ROOT}/integrations/orders"
"""``POST``: an online shop places an order, exactly once per (channel, external_id);
it becomes a draft sales order, confirmed at once if asked (docs/integrations.md)."""
INTEGRATION_CHANNELS = f"{API_ROOT}/integrations/channels"
"""The online shops' channels and whether they sign their orders (admins);
``/{channel}/rotate-secret`` gives one a new signing secret (docs/integrations.md)."""

PERIODS = f"{API_ROOT}/periods"
"""Period close (月结): ``GET`` the closed months, ``/{period}``, ``/{period}/close``,
``/{period}/reopen``."""
LOT_RECALL = f"{API_ROOT}/lots/recall"
"""``GET ?item=&lot=``: where a lot is, where it came from and who received it."""
FEEDBACK = f"{API_ROOT}/feedback"
"""Notes sent from the console (any user), ``/{id}`` with ``/screenshot``, ``/tags`` and
``/resolve``, ``/summary?month=`` the monthly count (admins; docs/console.md)."""


def below_api_root(path: str) -> str:
    """``/api/v1/sync/events`` -> ``/sync/events``: a path as central's routers, mounted
    at :data:`API_ROOT`, declare it."""
    if not path.startswith(f"{API_ROOT}/"):
        raise ValueError(f"{path!r} is not below {API_ROOT}")
    return path.removeprefix(API_ROOT)


CONSOLE = "/console"
"""The web console's pages (HTML for people; the demo prints it, central serves it)."""
