"""The versioned API: every resource router, added under one prefix by create_app.

``api_routers`` is a list, not a router that includes them: create_app adds each
router's routes to the app flat (``route_index.include_flat``), so a request is matched
once, not once per level of nesting (docs/performance.md, "Routing once, through an
index"). Their order is the order of the OpenAPI document and of matching.
"""

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

api_routers: list[APIRouter] = []
api_routers.append(sync.router)
api_routers.append(sales.available_router)
for replenishment_router in replenishment.routers:
    api_routers.append(replenishment_router)
api_routers.append(stock.router)
# Items before valuation and reports (from when FastAPI matched a request against every
# route of the routers before its own, twice: docs/performance.md, "Cost per request:
# pushes and item creates"); the order no longer costs anything ("Routing once").
api_routers.append(items.router)
api_routers.append(valuation.router)
api_routers.append(reports.router)
api_routers.append(master.categories_router)
api_routers.append(master.sites_router)
api_routers.append(master.partners_router)
for reference_router in reference.reference_routers:
    api_routers.append(reference_router)
api_routers.append(auth.router)
api_routers.append(people.users_router)
api_routers.append(people.roles_router)
api_routers.append(audit.router)
api_routers.append(webhooks.router)
for periods_router in periods.routers:
    api_routers.append(periods_router)
api_routers.append(feedback.router)
api_routers.append(imports.router)
api_routers.append(purchasing.requisitions_router)
api_routers.append(purchasing.purchase_orders_router)
api_routers.append(purchasing.exceptions_router)
for receiving_router in receiving.routers:
    api_routers.append(receiving_router)
for inventory_router in inventory.routers:
    api_routers.append(inventory_router)
api_routers.append(sales.price_lists_router)
api_routers.append(sales.sales_orders_router)
api_routers.append(ecommerce.router)
api_routers.append(ecommerce.channels_router)
for shipping_router in shipping.routers:
    api_routers.append(shipping_router)
api_routers.append(customer_returns.router)
for receivables_router in receivables.routers:
    api_routers.append(receivables_router)
