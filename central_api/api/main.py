"""The versioned API: every resource router under one prefix, mounted by create_app."""

from __future__ import annotations

from fastapi import APIRouter

from central_api.api.routes import (
    audit,
    auth,
    customer_returns,
    ecommerce,
    feedback,
    imports,
    inventory,
    items,
    master,
    people,
    periods,
    purchasing,
    receivables,
    receiving,
    reference,
    replenishment,
    reports,
    sales,
    shipping,
    stock,
    sync,
    valuation,
    webhooks,
)

api_router = APIRouter()
api_router.include_router(sync.router)
api_router.include_router(sales.available_router)
for replenishment_router in replenishment.routers:
    api_router.include_router(replenishment_router)
api_router.include_router(stock.router)
# Items before valuation and reports: FastAPI matches a request against every route of
# the routers before its own, twice (docs/performance.md, "Cost per request: pushes and
# item creates"); none of the routers it moved ahead of has an /items path.
api_router.include_router(items.router)
api_router.include_router(valuation.router)
api_router.include_router(reports.router)
api_router.include_router(master.categories_router)
api_router.include_router(master.sites_router)
api_router.include_router(master.partners_router)
for reference_router in reference.reference_routers:
    api_router.include_router(reference_router)
api_router.include_router(auth.router)
api_router.include_router(people.users_router)
api_router.include_router(people.roles_router)
api_router.include_router(audit.router)
api_router.include_router(webhooks.router)
for periods_router in periods.routers:
    api_router.include_router(periods_router)
api_router.include_router(feedback.router)
api_router.include_router(imports.router)
api_router.include_router(purchasing.requisitions_router)
api_router.include_router(purchasing.purchase_orders_router)
api_router.include_router(purchasing.exceptions_router)
for receiving_router in receiving.routers:
    api_router.include_router(receiving_router)
for inventory_router in inventory.routers:
    api_router.include_router(inventory_router)
api_router.include_router(sales.price_lists_router)
api_router.include_router(sales.sales_orders_router)
api_router.include_router(ecommerce.router)
api_router.include_router(ecommerce.channels_router)
for shipping_router in shipping.routers:
    api_router.include_router(shipping_router)
api_router.include_router(customer_returns.router)
for receivables_router in receivables.routers:
    api_router.include_router(receivables_router)
