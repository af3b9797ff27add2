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

api_routers: list[APIRouter] = [
    sync.router,
    sales.available_router,
    *replenishment.routers,
    stock.router,
    # Items before valuation and reports (from when FastAPI matched a request against
    # every route of the routers before its own, twice: docs/performance.md, "Cost per
    # request: pushes and item creates"); the order no longer costs anything ("Routing once").
    items.router,
    valuation.router,
    reports.router,
    master.categories_router,
    master.sites_router,
    master.partners_router,
    *reference.reference_routers,
    auth.router,
    people.users_router,
    people.roles_router,
    audit.router,
    webhooks.router,
    *periods.routers,
    feedback.router,
    imports.router,
    purchasing.requisitions_router,
    purchasing.purchase_orders_router,
    purchasing.exceptions_router,
    *receiving.routers,
    *inventory.routers,
    sales.price_lists_router,
    sales.sales_orders_router,
    ecommerce.router,
    ecommerce.channels_router,
    *shipping.routers,
    customer_returns.router,
    *receivables.routers,
]
