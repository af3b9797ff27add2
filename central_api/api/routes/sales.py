"""Sales: price lists, sales orders and their commands, available-to-promise.

Follows purchasing's conventions (``central_api.api.routes.purchasing``): a state changes
only by a command, ``POST /{so_id}/<verb>``, each its own action; every create and
command takes an ``Idempotency-Key``; every answer with one document carries its version
as ``ETag``, and a write sent with ``If-Match`` is refused with 412 when it changed since.
A user limited to some sites sees nothing of the others' orders (404).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.documents import (
    ERRORS,
    After,
    CallerDep,
    IfMatch,
    Limit,
    answer,
    refuse_unseen_prices,
    replaying,
)
from central_api.api.idempotency import IdempotencyDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.errors import ForbiddenError
from central_api.schemas.ecommerce import Channel
from central_api.schemas.purchasing import CommandIn
from central_api.schemas.sales import (
    AvailableOut,
    LotAvailableOut,
    PriceListIn,
    PriceListOut,
    PriceListPage,
    SalesOrderIn,
    SalesOrderOut,
    SalesOrderPage,
    SoStatusText,
)
from central_api.services import sales as service
from central_api.services.documents import plain
from jxc.contract import Code, SiteId, Text
from jxc.paths import PRICE_LISTS, SALES_ORDERS, STOCK_AVAILABLE, below_api_root

SoId = Annotated[Code, Path(description="the sales order's id, e.g. SO000012")]
PriceListCode = Annotated[
    Text, Path(min_length=1, max_length=32, description="the price list's code, e.g. RETAIL")
]
# --- price lists ----------------------------------------------------------------------------

price_lists_router = APIRouter(prefix=below_api_root(PRICE_LISTS), tags=["price lists"])


@price_lists_router.get("", dependencies=[Requires("price_list.read")])
def read_price_lists(
    *, connection: ConnDep, after: After = None, limit: Limit = 100
) -> PriceListPage:
    """Price lists by code; prices only for the financial field group."""
    found, next_after = service.list_price_lists(connection, after=after, limit=limit)
    return PriceListPage(
        price_lists=[PriceListOut.model_validate(found_list) for found_list in found],
        next_after=next_after,
    )


@price_lists_router.get("/{code}", dependencies=[Requires("price_list.read")], responses=ERRORS)
def read_price_list(code: PriceListCode, connection: ConnDep, response: Response) -> PriceListOut:
    return answer(response, service.get_price_list(connection, code), PriceListOut)


@price_lists_router.put("/{code}", dependencies=[Requires("price_list.write")], responses=ERRORS)
def write_price_list(
    *,
    code: PriceListCode,
    body: PriceListIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    response: Response,
    if_match: IfMatch = None,
) -> PriceListOut:
    """Create the price list or replace its name and lines (a PUT repeated changes only
    the version, so it needs no Idempotency-Key). Prices are financial: a role without
    the financial field group may not write them."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show prices, so you may not set them")
    found, created = service.put_price_list(
        connection,
        code=code,
        name=body.name,
        lines=[service.PriceLineInput(**line.model_dump()) for line in body.lines],
        if_match=if_match,
        audit=audit,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return answer(response, found, PriceListOut)


# --- sales orders ---------------------------------------------------------------------------

sales_orders_router = APIRouter(prefix=below_api_root(SALES_ORDERS), tags=["sales orders"])


def _so_out(so: service.SalesOrder, response: Response) -> SalesOrderOut:
    return answer(response, so, SalesOrderOut)


def _so_lines(body: SalesOrderIn) -> list[service.SoLineInput]:
    return [service.SoLineInput(**line.model_dump()) for line in body.lines]


@sales_orders_router.get("", dependencies=[Requires("sales_order.read")])
def read_sales_orders(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status_: Annotated[SoStatusText | None, Query(alias="status")] = None,
    customer: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    channel: Annotated[Channel | None, Query(description="only this online shop's orders")] = None,
    after: After = None,
    limit: Limit = 100,
) -> SalesOrderPage:
    """Sales orders by id, filtered; only the caller's sites."""
    found, next_after = service.list_sales_orders(
        connection,
        chosen=service.SoFilter(
            status=None if status_ is None else service.SoStatus(status_),
            customer=customer,
            site_id=site_id,
            visible_sites=principal.sites,
            channel=channel,
        ),
        after=after,
        limit=limit,
    )
    return SalesOrderPage(
        sales_orders=[SalesOrderOut.model_validate(so) for so in found], next_after=next_after
    )


@sales_orders_router.post(
    "",
    dependencies=[Requires("sales_order.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_sales_order(
    *,
    body: SalesOrderIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> SalesOrderOut:
    """A new sales order, as a draft; lines without a price take the customer's list price."""
    refuse_unseen_prices(body.lines, principal)
    so = replaying(
        response,
        lambda: service.create_sales_order(
            connection,
            customer=body.customer,
            site_id=body.site_id,
            note=body.note,
            min_remaining_days=body.min_remaining_days,
            lines=_so_lines(body),
            created_by=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda so_id: service.get_sales_order(connection, so_id),
    )
    return _so_out(so, response)


@sales_orders_router.get("/{so_id}", dependencies=[Requires("sales_order.read")], responses=ERRORS)
def read_sales_order(
    so_id: SoId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> SalesOrderOut:
    return _so_out(service.get_sales_order(connection, so_id, visible=principal.sites), response)


@sales_orders_router.put(
    "/{so_id}", dependencies=[Requires("sales_order.create")], responses=ERRORS
)
def write_sales_order(
    *,
    so_id: SoId,
    body: SalesOrderIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    response: Response,
    if_match: IfMatch = None,
) -> SalesOrderOut:
    """Replace a draft's customer, site, note and lines."""
    refuse_unseen_prices(body.lines, principal)
    so = service.update_sales_order(
        connection,
        so_id=so_id,
        customer=body.customer,
        site_id=body.site_id,
        note=body.note,
        min_remaining_days=body.min_remaining_days,
        lines=_so_lines(body),
        visible=principal.sites,
        if_match=if_match,
        audit=audit,
    )
    return _so_out(so, response)


def _so_command_route(
    verb: str,
    action: str,
    run: Callable[[Any, service.SoCommand], service.SalesOrder],
    summary: str,
) -> None:
    def command(*, so_id: SoId, call: CallerDep, body: CommandIn | None = None) -> SalesOrderOut:
        order = call.command(service.SoCommand, None if body is None else body.reason, so_id=so_id)
        return call.run(lambda: run(call.connection, order), service.get_sales_order, SalesOrderOut)

    command.__name__ = f"{verb}_sales_order"
    command.__doc__ = summary
    sales_orders_router.post(
        f"/{{so_id}}/{verb}", dependencies=[Requires(action)], responses=ERRORS
    )(command)


_so_command_route(
    "confirm",
    "sales_order.confirm",
    service.confirm_sales_order,
    "draft → confirmed: the customer's credit is checked (409 over the limit), then lots "
    "are reserved first-expiry-first; what cannot be reserved stays as the backorder.",
)
_so_command_route(
    "reserve",
    "sales_order.confirm",
    service.reserve_sales_order,
    "confirmed: reserve the backorders again from what is available now.",
)
_so_command_route(
    "cancel",
    "sales_order.cancel",
    service.cancel_sales_order,
    "draft or confirmed → cancelled; its reservations are released.",
)
_so_command_route(
    "close",
    "sales_order.close",
    service.close_sales_order,
    "confirmed → closed; what is still reserved is released, backorders end.",
)


# --- available to promise -----------------------------------------------------------------

available_router = APIRouter(prefix=below_api_root(STOCK_AVAILABLE), tags=["stock"])


@available_router.get("", dependencies=[Requires("stock.read")], responses=ERRORS)
def read_available(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId, Query()],
    item: Annotated[Code, Query()],
) -> AvailableOut:
    """Available-to-promise of an item at a site: sellable on hand less reservations."""
    if principal.sites is not None and site_id not in principal.sites:
        raise ForbiddenError(f"site_id: site {site_id} is outside your sites")
    lots = service.get_availability(connection, site_id, item)
    uom, _factors = service.item_unit(connection, item)

    def total(name: str) -> Decimal:
        return plain(sum((getattr(lot, name) for lot in lots), Decimal(0)))

    return AvailableOut(
        site_id=site_id,
        item=item,
        uom=uom,
        on_hand=total("on_hand"),
        unsellable=total("unsellable"),
        reserved=total("reserved"),
        available=total("available"),
        lots=[LotAvailableOut.model_validate(lot) for lot in lots],
    )
