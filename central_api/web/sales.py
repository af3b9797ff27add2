"""The console's sales pages: price lists, sales orders and their commands, and an
available-to-promise lookup.

Thin over ``services/sales.py`` with the API routes' actions, as the purchasing pages are
(:mod:`central_api.web.purchasing`): the user's sites as ``visible`` (another site's order
is a 404, a site filter outside them a 403), the page's version as ``If-Match`` and a key
made when the page was drawn as ``Idempotency-Key`` on every command and create.

Prices, tax rates and amounts are dropped by the handler for a role without the financial
field group (``_so_view``, ``_price_list_view``); such a role's order form neither shows
nor reads them (a line then takes the customer's list price, as in the API), and a price
list's form is refused to it (the API's rule: who cannot see prices may not set them).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, fields
from decimal import Decimal
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, InvalidError, NotFoundError
from central_api.schemas.sales import PriceListIn, SalesOrderIn
from central_api.services import sales as service
from central_api.services.audit import AuditContext
from central_api.services.documents import CommandGuard, DocCommand
from central_api.services.idempotency import IdempotentReplay
from central_api.services.partners import PartnerFilter, list_partners
from central_api.services.purchasing import plain
from central_api.web import i18n
from central_api.web.forms import validate
from central_api.web.purchasing import (
    _REFUSALS,
    BLANK_LINES,
    PAGE,
    STATUS_LABELS,
    VERB_LABELS,
    IdQuery,
    _if_match,
    _posted,
    _row_key,
    _sites,
    options,
    posted_rows,
    refusal_key,
    sent_lines,
    url,
)
from central_api.web.receiving import command_route
from central_api.web.render import CONSOLE_ROOT, gettext_for, render
from central_api.web.routes import form_claim, redirect
from central_api.web.sales_docs import order_documents
from jxc.contract import Code

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

SOS: Final = f"{CONSOLE_ROOT}/sales-orders"
PRICE_LISTS: Final = f"{CONSOLE_ROOT}/price-lists"
ATP: Final = f"{CONSOLE_ROOT}/availability"

READ_SO = Requires("sales_order.read")
CREATE_SO = Requires("sales_order.create")
READ_PRICES = Requires("price_list.read")
WRITE_PRICES = Requires("price_list.write")

ListCode = Annotated[str, Query(alias="code", max_length=32)]

SO_VERBS: Final[dict[str, tuple[str, frozenset[service.SoStatus]]]] = {
    "confirm": ("sales_order.confirm", frozenset({service.SoStatus.DRAFT})),
    "reserve": ("sales_order.confirm", frozenset({service.SoStatus.CONFIRMED})),
    "close": ("sales_order.close", frozenset({service.SoStatus.CONFIRMED})),
    "cancel": (
        "sales_order.cancel",
        frozenset({service.SoStatus.DRAFT, service.SoStatus.CONFIRMED}),
    ),
}
"""Each command's action and the states that offer its button (the service decides)."""

_SO_RUN: Final = {
    "confirm": service.confirm_sales_order,
    "reserve": service.reserve_sales_order,
    "close": service.close_sales_order,
    "cancel": service.cancel_sales_order,
}


def _customers(request: Request, connection: Connection) -> list[tuple[str, str]]:
    found, _after = list_partners(
        connection, after=None, limit=500, filters=PartnerFilter(role="customer", q=None)
    )
    return options(request, found, "code")


# --- sales orders ----------------------------------------------------------------------------


def _so_view(so: service.SalesOrder, principal: Principal) -> dict[str, Any]:
    """An order as a page may show it: no price, rate or amount without the group."""
    view = asdict(so)
    view["status"] = so.status.value
    total = Decimal(0)
    for line, data in zip(so.lines, view["lines"], strict=True):
        data["reserved_qty"] = line.reserved_qty
        data["backorder_qty"] = line.backorder_qty
        if principal.financial:
            data["amount"] = line.amount
            total += line.amount
        else:
            data.pop("unit_price", None)
            data.pop("tax_rate", None)
    view["backorders"] = any(line.backorder_qty for line in so.lines)
    if principal.financial:
        view["amount"] = plain(total)
    return view


@pages.get("/sales-orders", dependencies=[READ_SO])
def sales_orders_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "",
    customer: Annotated[str, Query(max_length=64)] = "",
    site: Annotated[str, Query(max_length=64)] = "",
    channel: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> HTMLResponse:
    """Sales orders (销售订单) of the user's sites, by status, customer, site and the
    online shop that placed them (its channel; each such order shows the shop's own id)."""
    chosen = status if status in service.SoStatus.__members__.values() else ""
    customer_text = "".join(c for c in customer if c.isprintable()).strip()
    site_text = "".join(c for c in site if c.isprintable()).strip()
    channel_text = "".join(c for c in channel if c.isprintable()).strip()
    if site_text and not principal.sees_site(site_text):
        raise ForbiddenError(f"site {site_text} is outside your sites")
    found, next_after = service.list_sales_orders(
        connection,
        chosen=service.SoFilter(
            status=service.SoStatus(chosen) if chosen else None,
            customer=customer_text or None,
            site_id=site_text or None,
            visible_sites=principal.sites,
            channel=channel_text or None,
        ),
        after=after or None,
        limit=PAGE,
    )
    filters = {
        "status": chosen,
        "customer": customer_text,
        "site": site_text,
        "channel": channel_text,
    }
    return render(
        request,
        "sales_orders.html",
        {
            "orders": [_so_view(so, principal) for so in found],
            "filters": filters,
            "statuses": [s.value for s in service.SoStatus],
            "sites": _sites(connection, principal),
            "more": None if next_after is None else url(SOS, **filters, after=next_after),
            "status_labels": STATUS_LABELS,
            "url": url,
        },
        principal=principal,
    )


def _so_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    so_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    so = service.get_sales_order(connection, so_id, visible=principal.sites)
    commands = [
        verb
        for verb, (action, states) in SO_VERBS.items()
        if so.status in states and principal.can(action)
    ]
    view = _so_view(so, principal)
    if not view["backorders"] and "reserve" in commands:
        commands.remove("reserve")
    return render(
        request,
        "sales_order.html",
        {
            "so": view,
            "commands": commands,
            "can_edit": so.status is service.SoStatus.DRAFT and principal.can("sales_order.create"),
            "documents": order_documents(connection, principal, so.so_id),
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{so.version}"'},
    )


@pages.get("/sales-orders/view", dependencies=[READ_SO])
def sales_order_page(
    request: Request, so_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """Header, lines with the lots reserved for them and what is backordered, commands."""
    return _so_page(request, connection, principal, so_id)


_GUARD: Final = tuple(f.name for f in fields(CommandGuard))
"""Who runs a command and what guards it: the same for a page's every document."""


def _so_command(verb: str) -> Any:
    run = _SO_RUN[verb]

    def command(connection: Connection, order: DocCommand, _posted_form: Any) -> object:
        guard = {name: getattr(order, name) for name in _GUARD}
        return run(connection, service.SoCommand(so_id=order.doc_id, **guard))

    return command


for _verb, (_action, _states) in SO_VERBS.items():
    command_route(pages, SOS, _verb, _action, run=_so_command(_verb), page=_so_page)


_SO_FIELDS: Final = ("item_code", "qty", "uom", "unit_price", "tax_rate", "requested_date")
_MONEY: Final = ("unit_price", "tax_rate")


def _so_line_form(line: service.SoLine | None, financial: bool) -> dict[str, str]:
    if line is None:
        row = dict.fromkeys(_SO_FIELDS, "")
    else:
        row = {
            "item_code": line.item_code,
            "qty": format(line.qty, "f"),
            "uom": line.uom,
            "unit_price": format(line.unit_price, "f"),
            "tax_rate": format(line.tax_rate, "f"),
            "requested_date": "" if line.requested_date is None else str(line.requested_date),
        }
    if not financial:
        for name in _MONEY:
            row.pop(name)
    return row


def _so_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    so_id: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "sales_order_form.html",
        {
            "form": form,
            "errors": errors,
            "so_id": so_id,
            "financial": principal.financial,
            "customers": _customers(request, connection),
            "sites": options(request, _sites(connection, principal), "site_id"),
            "action": f"{SOS}/new" if so_id is None else url(f"{SOS}/edit", id=so_id),
            "cancel": SOS if so_id is None else url(f"{SOS}/view", id=so_id),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/sales-orders/new", dependencies=[CREATE_SO])
def new_sales_order_page(
    request: Request, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    form: dict[str, Any] = {
        "customer": "",
        "site_id": "",
        "note": "",
        "min_remaining_days": "",
        "lines": [_so_line_form(None, principal.financial) for _ in range(BLANK_LINES)],
        "idempotency_key": str(uuid.uuid4()),
        "version": "",
    }
    return _so_form(request, connection, principal, form, {}, so_id=None)


@pages.get("/sales-orders/edit", dependencies=[CREATE_SO])
def edit_sales_order_page(
    request: Request, so_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    so = service.get_sales_order(connection, so_id, visible=principal.sites)
    form: dict[str, Any] = {
        "customer": so.customer,
        "site_id": so.site_id,
        "note": so.note,
        "min_remaining_days": "" if so.min_remaining_days is None else str(so.min_remaining_days),
        "lines": [_so_line_form(line, principal.financial) for line in so.lines]
        + [_so_line_form(None, principal.financial) for _ in range(BLANK_LINES)],
        "idempotency_key": "",
        "version": str(so.version),
    }
    return _so_form(request, connection, principal, form, {}, so_id=so_id)


@pages.post("/sales-orders/new", dependencies=[CREATE_SO])
async def create_sales_order_form(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save_so(request, connection, principal, audit, so_id=None)


@pages.post("/sales-orders/edit", dependencies=[CREATE_SO])
async def update_sales_order_form(
    request: Request, so_id: IdQuery, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save_so(request, connection, principal, audit, so_id=so_id)


async def _save_so(
    request: Request,
    connection: Connection,
    principal: Principal,
    audit: AuditContext,
    *,
    so_id: str | None,
) -> Response:
    """Checked whole with the API's ``SalesOrderIn``, then one service call (a draft)."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    fields = _SO_FIELDS if principal.financial else tuple(f for f in _SO_FIELDS if f not in _MONEY)
    rows = posted_rows(posted, fields)
    form: dict[str, Any] = {
        "customer": _posted(posted, "customer"),
        "site_id": _posted(posted, "site_id"),
        "note": _posted(posted, "note", 1000),
        "min_remaining_days": _posted(posted, "min_remaining_days", 10),
        "lines": rows,
        "idempotency_key": _posted(posted, "idempotency_key"),
        "version": _posted(posted, "version", 20),
    }
    used = [(i, row) for i, row in enumerate(rows) if any(row.values())]
    body = {
        "customer": form["customer"],
        "site_id": form["site_id"],
        "note": form["note"],
        "min_remaining_days": form["min_remaining_days"] or None,
        "lines": sent_lines(used, "item_code", "qty"),
    }
    checked, found = validate(SalesOrderIn, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    if not used:
        errors["lines"] = _("Enter at least one line.")
    if not errors:
        header = {
            "customer": checked.customer,
            "site_id": checked.site_id,
            "note": checked.note,
            "min_remaining_days": checked.min_remaining_days,
            "lines": [service.SoLineInput(**line.model_dump()) for line in checked.lines],
            "visible": principal.sites,
            "audit": audit,
        }
        try:
            if so_id is None:
                saved = service.create_sales_order(
                    connection,
                    **header,
                    created_by=principal.name,
                    claim=form_claim(request, principal, form["idempotency_key"], raw),
                )
            else:
                saved = service.update_sales_order(
                    connection, so_id=so_id, **header, if_match=_if_match(posted)
                )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{SOS}/view", id=replay.resource_id))
        except (*_REFUSALS, NotFoundError) as refused:
            key, reason = refusal_key(refused, used, "customer", "site_id", "min_remaining_days")
            errors[key] = reason
        else:
            return redirect(request, url(f"{SOS}/view", id=saved.so_id))
    return _so_form(request, connection, principal, form, errors, so_id=so_id, status_code=422)


# --- price lists -------------------------------------------------------------------------------


def _price_list_view(found: service.PriceList, principal: Principal) -> dict[str, Any]:
    view = asdict(found)
    if not principal.financial:
        for line in view["lines"]:
            line.pop("price", None)
    return view


@pages.get("/price-lists", dependencies=[READ_PRICES])
def price_lists_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    after: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    """Price lists (价目表) by code; a customer's orders take their prices from its list."""
    after_text = "".join(c for c in after or "" if c.isprintable())
    found, next_after = service.list_price_lists(connection, after=after_text or None, limit=PAGE)
    return render(
        request,
        "price_lists.html",
        {
            "price_lists": found,
            "may_write": principal.can("price_list.write") and principal.financial,
            "more": None if next_after is None else url(PRICE_LISTS, after=next_after),
            "url": url,
        },
        principal=principal,
    )


def _list_code(code: str) -> str:
    """A price list's code as the API's path takes it (1–32 printable, no spaces), else a
    404 page: no list could have it."""
    if not code or not all(c.isprintable() and not c.isspace() for c in code):
        raise NotFoundError(f"price list {code[:32]!r} does not exist")
    return code


@pages.get("/price-lists/view", dependencies=[READ_PRICES])
def price_list_page(
    request: Request, code: ListCode, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    found = service.get_price_list(connection, _list_code(code))
    return render(
        request,
        "price_list.html",
        {
            "price_list": _price_list_view(found, principal),
            "may_write": principal.can("price_list.write") and principal.financial,
            "url": url,
        },
        principal=principal,
        headers={"ETag": f'"{found.version}"'},
    )


_PRICE_FIELDS: Final = ("item_code", "uom", "price", "valid_from", "valid_to")


def _price_row(line: service.PriceLine | None) -> dict[str, str]:
    if line is None:
        return dict.fromkeys(_PRICE_FIELDS, "")
    return {
        "item_code": line.item_code,
        "uom": line.uom,
        "price": format(line.price, "f"),
        "valid_from": "" if line.valid_from is None else str(line.valid_from),
        "valid_to": "" if line.valid_to is None else str(line.valid_to),
    }


def _price_form(
    request: Request,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "price_list_form.html",
        {"form": form, "errors": errors, "url": url},
        principal=principal,
        status_code=status_code,
    )


def _require_money(principal: Principal) -> None:
    if not principal.financial:
        raise ForbiddenError("your roles do not show prices, so you may not set them")


@pages.get("/price-lists/edit", dependencies=[WRITE_PRICES])
def edit_price_list_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, code: ListCode = ""
) -> HTMLResponse:
    """A new price list (no code), or an existing one's name and lines."""
    _require_money(principal)
    found = service.get_price_list(connection, _list_code(code)) if code else None
    form: dict[str, Any] = {
        "code": code,
        "new": found is None,
        "name": "" if found is None else found.name,
        "lines": [_price_row(line) for line in ([] if found is None else found.lines)]
        + [_price_row(None) for _ in range(BLANK_LINES + 2)],
        "version": "" if found is None else str(found.version),
    }
    return _price_form(request, principal, form, {})


@pages.post("/price-lists/edit", dependencies=[WRITE_PRICES])
async def save_price_list_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    code: ListCode = "",
) -> Response:
    """The API's PUT (idempotent by nature: a repeated save changes only the version), with
    the opened version as ``If-Match``; a new list whose code exists is refused."""
    _require_money(principal)
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    new = not code
    chosen = _posted(posted, "code", 40) if new else code
    rows = posted_rows(posted, _PRICE_FIELDS)
    form: dict[str, Any] = {
        "code": chosen,
        "new": new,
        "name": _posted(posted, "name"),
        "lines": rows,
        "version": _posted(posted, "version", 20),
    }
    used = [(i, row) for i, row in enumerate(rows) if any(row.values())]
    body = {
        "name": form["name"],
        "lines": sent_lines(used, "item_code", "price"),
    }
    checked, found = validate(PriceListIn, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    if not chosen or len(chosen) > 32 or any(c.isspace() or not c.isprintable() for c in chosen):
        errors["code"] = _("Enter a code of up to 32 letters, digits or signs, without spaces.")
    elif new and _exists(connection, chosen):
        errors["code"] = _("A price list with this code exists.")
    if not errors:
        try:
            service.put_price_list(
                connection,
                code=chosen,
                name=checked.name,
                lines=[service.PriceLineInput(**line.model_dump()) for line in checked.lines],
                if_match=None if new else _if_match(posted),
                audit=audit,
            )
        except (*_REFUSALS, NotFoundError) as refused:
            key, reason = refusal_key(refused, used, "name")
            errors[key] = reason
        else:
            return redirect(request, url(f"{PRICE_LISTS}/view", code=chosen))
    return _price_form(request, principal, form, errors, status_code=422)


def _exists(connection: Connection, code: str) -> bool:
    try:
        service.get_price_list(connection, code)
    except NotFoundError:
        return False
    return True


# --- available to promise ------------------------------------------------------------------


@pages.get("/availability", dependencies=[Requires("stock.read")])
def availability_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    site: Annotated[str, Query(max_length=64)] = "",
    item: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """Available to promise (可承诺量) of an item at a site, lot by lot, earliest expiry
    first: sellable on hand less what orders have reserved."""
    _ = gettext_for(i18n.language_of(request))
    site_text = "".join(c for c in site if c.isprintable()).strip()
    item_text = "".join(c for c in item if c.isprintable()).strip()
    if site_text and not principal.sees_site(site_text):
        raise ForbiddenError(f"site_id: site {site_text} is outside your sites")
    lots: list[service.LotAvailability] = []
    uom, problem = "", ""
    if site_text and item_text:
        try:
            lots = service.get_availability(connection, site_text, item_text)
            uom, _factors = service.item_unit(connection, item_text)
        except InvalidError:
            problem = _("No item has this code.")
    elif item_text or site_text:
        problem = _("Choose a site and an item.")
    lots = sorted(lots, key=service.fefo_key)

    def total(name: str) -> Decimal:
        return plain(sum((getattr(lot, name) for lot in lots), Decimal(0)))

    return render(
        request,
        "availability.html",
        {
            "site": site_text,
            "item": item_text,
            "sites": _sites(connection, principal),
            "lots": lots,
            "uom": uom,
            "asked": bool(site_text and item_text and not problem),
            "problem": problem,
            "totals": {
                name: total(name) for name in ("on_hand", "unsellable", "reserved", "available")
            },
        },
        principal=principal,
    )
