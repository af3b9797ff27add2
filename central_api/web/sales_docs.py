"""The console's pages for what follows a sales order: pick lists, shipments confirmed at
central and their delivery notes, customer returns (authorise, receive, restock or scrap),
sales invoices with payments received, and the receivables ageing.

Thin over ``services/shipping.py``, ``services/customer_returns.py`` and
``services/receivables.py`` with the API routes' actions, as the purchasing and receiving
pages are (:mod:`central_api.web.purchasing`, :mod:`central_api.web.receiving`): the user's
sites as ``visible`` (another site's document is a 404, a site filter outside them a 403),
the page's version as ``If-Match`` and a key made when the page was drawn as
``Idempotency-Key`` on every create and command (:func:`~central_api.web.receiving.
command_route`), the request's audit context on every write.

A form is drawn from the sales order it is entered against, one row per order line, so
nobody types a line number: a shipment offers the lines with stock reserved and not yet
shipped, a return the lines that shipped (and the lots they shipped).

Pick lists, shipments and returns carry no price (a warehouse clerk works them).
Invoices, payments and the ageing are money through and through: as in the API
(``api/routes/receivables.py``), every one of those pages refuses a role without the
financial field group with a 403, besides its action, and their menu entries are not shown
to such a role.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy import Connection, select

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, InvalidError
from central_api.models.sales import sales_invoices
from central_api.schemas.customer_returns import ReturnIn
from central_api.schemas.receivables import CreditNoteIn, PaymentIn, SalesInvoiceIn
from central_api.schemas.shipping import ShipmentIn, TrackingIn
from central_api.services import alerts, customer_returns, receivables, sales, shipping
from central_api.services.documents import DocCommand, site_conditions
from central_api.services.idempotency import IdempotencyClaim, IdempotentReplay
from central_api.services.projections import Projections
from central_api.services.reference import list_entries
from central_api.services.sites import list_locations
from central_api.web import i18n
from central_api.web.forms import validate
from central_api.web.purchasing import (
    _REFUSALS,
    STATUS_LABELS,
    VERB_LABELS,
    IdQuery,
    Lister,
    _posted,
    _row_key,
    document_list,
    options,
    posted_rows,
    refusal_key,
    site_filter,
    url,
)
from central_api.web.receiving import command_route
from central_api.web.render import CONSOLE_ROOT, N_, gettext_for, render
from central_api.web.routes import form_claim, redirect
from jxc.contract import Code

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

PICK_LISTS: Final = f"{CONSOLE_ROOT}/pick-lists"
SHIPMENTS: Final = f"{CONSOLE_ROOT}/shipments"
RETURNS: Final = f"{CONSOLE_ROOT}/customer-returns"
INVOICES: Final = f"{CONSOLE_ROOT}/sales-invoices"
AGEING: Final = f"{CONSOLE_ROOT}/receivables-ageing"
SOS: Final = f"{CONSOLE_ROOT}/sales-orders"

SoQuery = Annotated[Code | None, Query(alias="so")]
ShipmentQuery = Annotated[Code | None, Query(alias="shipment")]
SiteQuery = Annotated[str, Query(alias="site", max_length=64)]
AfterQuery = Annotated[Code | None, Query()]

DOC_LABELS: Final[dict[str, str]] = {
    **STATUS_LABELS,
    "open": N_("Not fully paid"),
    "authorised": N_("Authorised"),
    "paid": N_("Paid"),
    "credited": N_("Credited in full"),
    "pending": N_("Pending"),
    "restocked": N_("Restocked"),
    "scrapped": N_("Scrapped"),
    "short": N_("Closed short"),
}
"""The msgid of each status and disposition these pages show (an invoice's ``open`` is
said as what it means to a cashier)."""

DOC_VERBS: Final[dict[str, str]] = {
    **VERB_LABELS,
    "receive": N_("Receive into quarantine"),
    "restock": N_("Restock"),
    "scrap": N_("Scrap"),
    "close-short": N_("Close short"),
    "tracking": N_("Save the tracking number"),
    "payment": N_("Record the payment"),
    "credit": N_("Issue the credit note"),
}
CREDIT_KINDS: Final[dict[str, str]] = {
    "return": N_("Customer return: quantities at the invoiced price"),
    "price": N_("Price correction: amounts before tax"),
}
"""The kinds of credit note (``receivables.CreditKind``) as the form offers them."""

BUCKET_LABELS: Final[dict[str, str]] = {
    "current": N_("Current (not yet due)"),
    "1-30": N_("1–30 days past due"),
    "31-60": N_("31–60 days past due"),
    "61-90": N_("61–90 days past due"),
    "over_90": N_("Over 90 days past due"),
}
"""The ageing buckets of ``services.receivables.BUCKETS`` as people read them."""


def sscc_of(text: str) -> str | None:
    """The SSCC-18 a person typed or a scanner sent: its digits, less a leading AI ``00``
    (a GS1-128 scan of the label gives 20 digits); None if that is not 18 digits."""
    digits = "".join(c for c in text if c.isdigit())
    if len(digits) == 20 and digits.startswith("00"):
        digits = digits[2:]
    return digits if len(digits) == 18 else None


def _today() -> date:
    return datetime.now(UTC).date()


def _clean(text: str) -> str:
    return "".join(c for c in text if c.isprintable()).strip()


def _require_money(principal: PrincipalDep) -> Principal:
    """The API's rule for receivables: amounts only for a role with the financial group
    (a dependency of every invoice, payment and ageing page, so none can forget it)."""
    if not principal.financial:
        raise ForbiddenError("receivables are amounts: your roles do not show them")
    return principal


money_pages = APIRouter(
    prefix=CONSOLE_ROOT, include_in_schema=False, dependencies=[Depends(_require_money)]
)
"""The invoice, payment and ageing pages: each also needs the financial field group."""

routers: Final = (pages, money_pages)


def _so_for(
    connection: Connection, principal: Principal, so_id: str | None
) -> sales.SalesOrder | None:
    return None if not so_id else sales.get_sales_order(connection, so_id, visible=principal.sites)


def _invoiced(
    connection: Connection, shipment_ids: list[str], visible: frozenset[str] | None
) -> dict[str, tuple[str, str]]:
    """shipment id → (its invoice's id, status): at most one invoice per shipment."""
    if not shipment_ids:
        return {}
    rows = connection.execute(
        select(sales_invoices.c.shipment_id, sales_invoices.c.invoice_id, sales_invoices.c.status)
        .where(sales_invoices.c.shipment_id.in_(shipment_ids))
        .where(*site_conditions(sales_invoices.c.site_id, None, visible))
    ).all()
    return {row[0]: (row[1], row[2]) for row in rows}


@dataclass(frozen=True, slots=True)
class OrderDocuments:
    """What the sales order page links to: its shipments, invoices and returns."""

    shipments: list[shipping.Shipment]
    invoices: list[tuple[str, str, str]]
    """(invoice id, shipment id, its status's msgid); empty for a role that may not see
    invoices."""
    returns: list[customer_returns.CustomerReturn]
    short_picks: list[alerts.Alert] = field(default_factory=list)
    """Lines an edge's picker ended short (``short_pick`` alerts), for any order reader:
    they carry quantities, no money."""


def order_documents(connection: Connection, principal: Principal, so_id: str) -> OrderDocuments:
    """The documents made from one order, for its page (only those the user may read)."""
    found: list[shipping.Shipment] = []
    if principal.can("shipment.read"):
        found, _after = shipping.list_shipments(
            connection, so_id=so_id, site_id=None, visible=principal.sites, after=None, limit=500
        )
    invoices: list[tuple[str, str, str]] = []
    if principal.financial and principal.can("sales_invoice.read"):
        invoiced = _invoiced(connection, [s.shipment_id for s in found], principal.sites)
        invoices = [
            (inv, sid, DOC_LABELS.get(status, status))
            for sid, (inv, status) in sorted(invoiced.items())
        ]
    came_back: list[customer_returns.CustomerReturn] = []
    if principal.can("customer_return.read"):
        came_back, _after = customer_returns.list_returns(
            connection, so_id=so_id, site_id=None, visible=principal.sites, after=None, limit=500
        )
    shorts = alerts.short_picks_of(connection, so_id, visible=principal.sites)
    return OrderDocuments(found, invoices, came_back, shorts)


# --- a form entered against a sales order --------------------------------------------------


@dataclass(frozen=True, slots=True)
class SoForm:
    """A posted form against an order, read and checked whole with the API's model."""

    form: dict[str, Any]
    used: list[tuple[int, dict[str, str]]]
    checked: Any
    errors: dict[str, str]
    claim: IdempotencyClaim | None


async def _read_so_form(
    request: Request,
    principal: Principal,
    so: sales.SalesOrder,
    rows_of: Callable[[sales.SalesOrder], list[dict[str, str]]],
    *,
    header: dict[str, int],
    fields: tuple[str, ...],
    model: type[Any],
    empty: str,
) -> SoForm:
    """The header fields (name → longest accepted) and the rows with a quantity, checked
    with ``model``; the rows keep their labels (not posted) from ``rows_of``."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    labels = {row["so_line"]: row for row in rows_of(so)}
    rows = [
        {**labels.get(row["so_line"], {}), **row}
        for row in posted_rows(posted, fields)
        if row["so_line"] in labels
    ]
    form: dict[str, Any] = {name: _posted(posted, name, limit) for name, limit in header.items()}
    form |= {"lines": rows, "idempotency_key": _posted(posted, "idempotency_key")}
    used = [(i, row) for i, row in enumerate(rows) if row["qty"]]
    body: dict[str, Any] = {
        "so_id": so.so_id,
        **{name: form[name] for name in header if form[name]},
        "lines": [{name: row[name] for name in fields if row[name]} for _i, row in used],
    }
    checked, found = validate(model, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    if not used:
        errors["lines"] = _(empty)
    return SoForm(
        form, used, checked, errors, form_claim(request, principal, form["idempotency_key"], raw)
    )


def _row_refusal(
    refused: Exception, used: list[tuple[int, dict[str, str]]], *fields: str
) -> tuple[str, str]:
    """Where a service's refusal goes on an order's form: a refusal of a whole line
    (``lines[1]: … has 5 kg reserved``) next to that row's quantity, the field these forms
    have for it (they have no item code to put it next to)."""
    key, reason = refusal_key(refused, used, *fields)
    if key.startswith("line-") and key.endswith("-item_code"):
        key = key.removesuffix("item_code") + "qty"
    return key, reason


def _line_label(line: sales.SoLine, qty: Decimal, lots: list[str]) -> str:
    """``#1 PILL · 25 片 · L3, L4``: the line, what may go (or come back), its lots."""
    label = f"#{line.line_no} {line.item_code} · {format(qty, 'f')} {line.base_uom}"
    return f"{label} · {', '.join(lots)}" if lots else label


def _so_documents(
    request: Request,
    connection: Connection,
    principal: Principal,
    lister: Lister,
    query: tuple[str | None, str, str | None],
    **page: Any,
) -> HTMLResponse:
    """A list of documents of sales orders (shipments, returns), by order and site."""
    so_id, site, after = query
    return document_list(
        request,
        connection,
        principal,
        lister,
        {"so_id": so_id or None},
        after=after,
        site=site,
        filters={"so": so_id or ""},
        **page,
    )


# --- pick lists ----------------------------------------------------------------------------


@pages.get("/pick-lists", dependencies=[Requires("pick_list.read")])
def pick_lists_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    site: SiteQuery = "",
    after: AfterQuery = None,
) -> HTMLResponse:
    """Confirmed orders of the user's sites: each one's pick list is what is reserved
    for it and not yet shipped (a pick list is read from the reservations, never stale)."""
    site_text = site_filter(principal, site)

    def confirmed(
        connection: Connection, *, visible: frozenset[str] | None, after: str | None, limit: int
    ) -> tuple[list[sales.SalesOrder], str | None]:
        chosen = sales.SoFilter(
            status=sales.SoStatus.CONFIRMED,
            customer=None,
            site_id=site_text or None,
            visible_sites=visible,
        )
        return sales.list_sales_orders(connection, chosen=chosen, after=after, limit=limit)

    return document_list(
        request,
        connection,
        principal,
        confirmed,
        {},
        after=after,
        filters={"site": site_text},
        template="sales_pick_lists.html",
        key="orders",
        base=PICK_LISTS,
        view=lambda so: {
            "so_id": so.so_id,
            "customer": so.customer,
            "site_id": so.site_id,
            "lines": len(so.lines),
            "to_pick": sum(1 for line in so.lines if line.reservations),
            "created_at": so.created_at,
        },
    )


@pages.get("/pick-lists/view", dependencies=[Requires("pick_list.read")])
def pick_list_page(
    request: Request, so_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """What to take for one order: each reserved lot, how much, and where it lies."""
    found = shipping.pick_list(connection, so_id, visible=principal.sites)
    return render(
        request,
        "sales_pick_list.html",
        {
            "pick": found,
            "status": found.status.value,
            "status_labels": DOC_LABELS,
            "may_ship": principal.can("shipment.create")
            and found.status is sales.SoStatus.CONFIRMED
            and bool(found.lines),
            "url": url,
        },
        principal=principal,
        headers={"ETag": f'"{found.version}"'},
    )


# --- shipments -----------------------------------------------------------------------------


@pages.get("/shipments", dependencies=[Requires("shipment.read")])
def shipments_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    so_id: SoQuery = None,
    site: SiteQuery = "",
    sscc: Annotated[str, Query(max_length=64)] = "",
    after: AfterQuery = None,
) -> HTMLResponse:
    """Shipments (发货) of the user's sites, by order and site, or the unit an edge packed
    under an SSCC (typed, or scanned off its label with or without the (00))."""
    sscc_text = sscc_of(sscc)
    if sscc.strip() and sscc_text is None:
        raise InvalidError("sscc: an SSCC has 18 digits (scan the label's (00) barcode)")
    return document_list(
        request,
        connection,
        principal,
        shipping.list_shipments,
        {"so_id": so_id or None, "sscc": sscc_text},
        after=after,
        site=site,
        filters={"so": so_id or "", "sscc": sscc_text or ""},
        template="shipment_list.html",
        key="shipments",
        base=SHIPMENTS,
    )


def _shipment_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    shipment_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    found = shipping.get_shipment(connection, shipment_id, visible=principal.sites)
    money = principal.financial and principal.can("sales_invoice.read")
    invoice = (
        _invoiced(connection, [found.shipment_id], principal.sites).get(found.shipment_id)
        if money
        else None
    )
    return render(
        request,
        "shipment_view.html",
        {
            "shipment": found,
            "invoice": invoice,
            "may_invoice": money and invoice is None and principal.can("sales_invoice.create"),
            "may_track": principal.can("shipment.create"),
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": DOC_LABELS,
            "verb_labels": DOC_VERBS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{found.version}"'},
    )


@pages.get("/shipments/view", dependencies=[Requires("shipment.read")])
def shipment_page(
    request: Request, shipment_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A shipment's lots and locations, its tracking number, its delivery note and invoice."""
    return _shipment_page(request, connection, principal, shipment_id)


def _set_tracking(connection: Connection, order: DocCommand, posted: Any) -> object:
    given = _posted(posted, "tracking_no", 200)
    try:
        checked = TrackingIn(tracking_no=given)
    except ValidationError:
        raise InvalidError("tracking_no: 1 to 64 printable characters") from None
    return shipping.set_tracking(connection, order, checked.tracking_no)


command_route(
    pages, SHIPMENTS, "tracking", "shipment.create", run=_set_tracking, page=_shipment_page
)


@pages.get("/shipments/note", dependencies=[Requires("shipment.read")])
def delivery_note_page(
    request: Request, shipment_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The delivery note (送货单) to print and sign: names, lots, quantities, no price."""
    note = shipping.delivery_note(connection, shipment_id, visible=principal.sites)
    return render(
        request,
        "shipment_note.html",
        {"note": note, "shipment": note.shipment, "printed_at": datetime.now(UTC), "url": url},
        principal=principal,
    )


_SHIP_FIELDS: Final = ("so_line", "qty", "uom", "lot", "location")


def _ship_rows(so: sales.SalesOrder) -> list[dict[str, str]]:
    """One row per line with stock reserved and not yet shipped, with its lots to choose."""
    return [
        {
            "so_line": str(line.line_no),
            "label": _line_label(
                line, line.reserved_qty, [r.lot for r in line.reservations if r.lot]
            ),
        }
        for line in so.lines
        if line.reservations
    ]


def _sellable_locations(
    request: Request, connection: Connection, site_id: str
) -> list[tuple[str, str]]:
    found, _after = list_locations(connection, site_id=site_id, after=None, limit=1000)
    return [
        ("", "—"),
        *options(
            request,
            [loc for loc in found if loc.active and loc.kind not in sales.UNSELLABLE_KINDS],
            "code",
        ),
    ]


def _shipment_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    so: sales.SalesOrder | None,
    *,
    form: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "shipment_form.html",
        {
            "so": so,
            "form": form,
            "errors": errors,
            "shippable": so is not None
            and so.status is sales.SoStatus.CONFIRMED
            and bool(_ship_rows(so)),
            "locations": [] if so is None else _sellable_locations(request, connection, so.site_id),
            "status_labels": DOC_LABELS,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/shipments/new", dependencies=[Requires("shipment.create")])
def new_shipment_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, so_id: SoQuery = None
) -> HTMLResponse:
    """Ship at central, for a site without an edge: scan or type the order, then per line
    what leaves (any part of what is reserved), optionally the lot and the location."""
    so = _so_for(connection, principal, so_id)
    form: dict[str, Any] = {
        "tracking_no": "",
        "note": "",
        "lines": [] if so is None else _ship_rows(so),
        "idempotency_key": str(uuid.uuid4()),
    }
    return _shipment_form(request, connection, principal, so, form=form, errors={})


@pages.post("/shipments/new", dependencies=[Requires("shipment.create")])
async def create_shipment_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    so_id: SoQuery = None,
) -> Response:
    """Rows with a quantity are the shipment's lines, checked with the API's
    ``ShipmentIn``; one service call books them all (stock out, order moved) or none."""
    so = _so_for(connection, principal, so_id)
    if so is None:
        raise InvalidError("so: choose a sales order")
    read = await _read_so_form(
        request,
        principal,
        so,
        _ship_rows,
        header={"tracking_no": 64, "note": 1000},
        fields=_SHIP_FIELDS,
        model=ShipmentIn,
        empty=N_("Enter the quantity shipped on at least one line."),
    )
    errors = read.errors
    if not errors:
        try:
            made = shipping.create_shipment(
                connection,
                so_id=so.so_id,
                tracking_no=read.checked.tracking_no,
                note=read.checked.note,
                lines=[
                    shipping.ShipmentLineInput(**line.model_dump()) for line in read.checked.lines
                ],
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                projections=getattr(request.app.state, "projections", None),
                claim=read.claim,
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{SHIPMENTS}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = _row_refusal(refused, read.used, "tracking_no", "note")
            errors[key] = reason
        else:
            return redirect(request, url(f"{SHIPMENTS}/view", id=made.shipment_id))
    return _shipment_form(
        request, connection, principal, so, form=read.form, errors=errors, status_code=422
    )


# --- customer returns ----------------------------------------------------------------------


@pages.get("/customer-returns", dependencies=[Requires("customer_return.read")])
def returns_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    so_id: SoQuery = None,
    site: SiteQuery = "",
    after: AfterQuery = None,
) -> HTMLResponse:
    """Customer returns (销售退货) of the user's sites, by order and site."""
    return _so_documents(
        request,
        connection,
        principal,
        customer_returns.list_returns,
        (so_id, site, after),
        template="sales_return_list.html",
        key="returns",
        base=RETURNS,
        status_labels=DOC_LABELS,
    )


def _scrap_reasons(request: Request, connection: Connection) -> list[tuple[str, str]]:
    """Active reason codes that apply to a write-off or a return (the service's rule)."""
    found = [
        entry
        for entry in list_entries(connection, "reason_codes", active=True)
        if any(use in entry.attrs.get("applies_to", []) for use in customer_returns.SCRAP_REASONS)
    ]
    return options(request, found, "code")


def _restock_locations(
    request: Request, connection: Connection, site_id: str
) -> list[tuple[str, str]]:
    found, _after = list_locations(connection, site_id=site_id, after=None, limit=1000)
    return options(
        request,
        [loc for loc in found if loc.active and loc.kind in ("storage", "receiving")],
        "code",
    )


def _return_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    return_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    found = customer_returns.get_return(connection, return_id, visible=principal.sites)
    received = found.status is customer_returns.ReturnStatus.RECEIVED
    may_dispose = principal.can("customer_return.dispose") and received
    return render(
        request,
        "sales_return_view.html",
        {
            "ret": found,
            "may_receive": principal.can("customer_return.receive")
            and found.status is customer_returns.ReturnStatus.AUTHORISED,
            "may_dispose": may_dispose,
            "may_close_short": principal.can("customer_return.dispose")
            and found.status
            in (customer_returns.ReturnStatus.AUTHORISED, customer_returns.ReturnStatus.RECEIVED)
            and any(
                line.disposition is customer_returns.Disposition.PENDING and line.received_qty <= 0
                for line in found.lines
            ),
            "locations": _restock_locations(request, connection, found.site_id)
            if may_dispose
            else [],
            "reasons": _scrap_reasons(request, connection) if may_dispose else [],
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": DOC_LABELS,
            "verb_labels": DOC_VERBS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{found.version}"'},
    )


@pages.get("/customer-returns/view", dependencies=[Requires("customer_return.read")])
def return_page(
    request: Request, return_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A return's lines, where they are, and what was decided for each."""
    return _return_page(request, connection, principal, return_id)


def _receive(
    connection: Connection, order: DocCommand, _posted_form: Any, projected: Projections | None
) -> object:
    return customer_returns.receive_return(connection, order, projections=projected)


def _line_no(posted: Any) -> int:
    number = _posted(posted, "line_no", 10)
    if not number.isdigit() or not 1 <= int(number) <= 100_000:
        raise InvalidError("line_no: choose a line")
    return int(number)


def _decide(verb: str) -> Callable[[Connection, DocCommand, Any, Projections | None], object]:
    def run(
        connection: Connection, order: DocCommand, posted: Any, projected: Projections | None
    ) -> object:
        decision = customer_returns.Decision(
            command=order,
            line_no=_line_no(posted),
            location=_posted(posted, "location", 64) or None,
            reason_code=_posted(posted, "reason_code", 64) or None,
        )
        if verb == "restock" and decision.location is None:
            raise InvalidError("location: choose where the goods go back to")
        return customer_returns.decide_line(connection, decision, verb, projections=projected)

    return run


command_route(
    pages,
    RETURNS,
    "receive",
    "customer_return.receive",
    run=_receive,
    page=_return_page,
    projected=True,
)


def _close_short(
    connection: Connection, order: DocCommand, _posted_form: Any, projected: Projections | None
) -> object:
    """The form's ``reason`` is the command's (``command_route`` reads it)."""
    return customer_returns.close_short(connection, order, projections=projected)


command_route(
    pages,
    RETURNS,
    "close-short",
    "customer_return.dispose",
    run=_close_short,
    page=_return_page,
    projected=True,
)
for _verb in ("restock", "scrap"):
    command_route(
        pages,
        RETURNS,
        _verb,
        "customer_return.dispose",
        run=_decide(_verb),
        page=_return_page,
        projected=True,
    )


_RETURN_FIELDS: Final = ("so_line", "qty", "uom", "lot")


def _return_rows_for(
    connection: Connection, principal: Principal
) -> Callable[[sales.SalesOrder], list[dict[str, str]]]:
    def rows(so: sales.SalesOrder) -> list[dict[str, str]]:
        """One row per shipped line, with the lots its shipments took."""
        shipped, _after = shipping.list_shipments(
            connection,
            so_id=so.so_id,
            site_id=None,
            visible=principal.sites,
            after=None,
            limit=500,
        )
        lots: dict[int, list[str]] = {}
        for each in shipped:
            for line in each.lines:
                if line.lot and line.lot not in lots.setdefault(line.so_line, []):
                    lots[line.so_line].append(line.lot)
        return [
            {
                "so_line": str(line.line_no),
                "label": _line_label(line, line.shipped_qty, lots.get(line.line_no, [])),
            }
            for line in so.lines
            if line.shipped_qty > 0
        ]

    return rows


def _return_form(
    request: Request,
    principal: Principal,
    so: sales.SalesOrder | None,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "sales_return_form.html",
        {"so": so, "form": form, "errors": errors},
        principal=principal,
        status_code=status_code,
    )


@pages.get("/customer-returns/new", dependencies=[Requires("customer_return.create")])
def new_return_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, so_id: SoQuery = None
) -> HTMLResponse:
    """A return authorisation (退货授权): the order first, then per shipped line how much
    may come back, and why."""
    so = _so_for(connection, principal, so_id)
    form: dict[str, Any] = {
        "reason": "",
        "lines": [] if so is None else _return_rows_for(connection, principal)(so),
        "idempotency_key": str(uuid.uuid4()),
    }
    return _return_form(request, principal, so, form, {})


@pages.post("/customer-returns/new", dependencies=[Requires("customer_return.create")])
async def create_return_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    so_id: SoQuery = None,
) -> Response:
    """Checked whole with the API's ``ReturnIn``; nothing moves until it is received."""
    so = _so_for(connection, principal, so_id)
    if so is None:
        raise InvalidError("so: choose a sales order")
    read = await _read_so_form(
        request,
        principal,
        so,
        _return_rows_for(connection, principal),
        header={"reason": 1000},
        fields=_RETURN_FIELDS,
        model=ReturnIn,
        empty=N_("Enter the quantity to come back on at least one line."),
    )
    errors = read.errors
    if not errors:
        try:
            made = customer_returns.create_return(
                connection,
                so_id=so.so_id,
                reason=read.checked.reason,
                lines=[
                    customer_returns.ReturnLineInput(**line.model_dump())
                    for line in read.checked.lines
                ],
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                claim=read.claim,
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{RETURNS}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = _row_refusal(refused, read.used, "reason")
            errors[key] = reason
        else:
            return redirect(request, url(f"{RETURNS}/view", id=made.return_id))
    return _return_form(request, principal, so, read.form, errors, status_code=422)


# --- sales invoices and payments -----------------------------------------------------------


@money_pages.get("/sales-invoices", dependencies=[Requires("sales_invoice.read")])
def invoices_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "",
    customer: Annotated[str, Query(max_length=64)] = "",
    site: SiteQuery = "",
    after: AfterQuery = None,
) -> HTMLResponse:
    """Sales invoices (销售发票) by status, customer and site, with what is outstanding and
    when it falls due."""
    customer_text = _clean(customer)
    return document_list(
        request,
        connection,
        principal,
        receivables.list_invoices,
        {"customer": customer_text or None},
        after=after,
        site=site,
        status=(status, receivables.InvoiceStatus),
        filters={"customer": customer_text},
        template="invoice_list.html",
        key="invoices",
        base=INVOICES,
        today=_today(),
        status_labels=DOC_LABELS,
    )


def _invoice_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    invoice_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    found = receivables.get_invoice(connection, invoice_id, visible=principal.sites)
    return render(
        request,
        "invoice_view.html",
        {
            "invoice": found,
            "today": _today(),
            "may_pay": principal.can("sales_invoice.payment")
            and found.status is receivables.InvoiceStatus.OPEN,
            "may_credit": principal.can("sales_invoice.credit")
            and found.status is receivables.InvoiceStatus.OPEN,
            "credit_kinds": CREDIT_KINDS,
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": DOC_LABELS,
            "verb_labels": DOC_VERBS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{found.version}"'},
    )


@money_pages.get("/sales-invoices/view", dependencies=[Requires("sales_invoice.read")])
def invoice_page(
    request: Request, invoice_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """An invoice's lines at the order's prices, its due date, the payments received."""
    return _invoice_page(request, connection, principal, invoice_id)


def _pay(connection: Connection, order: DocCommand, posted: Any) -> object:
    """A payment as the form sent it, checked with the API's ``PaymentIn``."""
    body = {
        name: _posted(posted, name, 64)
        for name in ("amount", "received_on", "method", "reference")
        if _posted(posted, name, 64)
    }
    try:
        checked = PaymentIn.model_validate(body)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "payment"
        raise InvalidError(f"{field}: {first['msg']}") from None
    given = receivables.PaymentInput(
        amount=checked.amount,
        received_on=checked.received_on or _today(),
        method=checked.method,
        reference=checked.reference,
    )
    return receivables.receive_payment(connection, order, given)


command_route(
    money_pages, INVOICES, "payment", "sales_invoice.payment", run=_pay, page=_invoice_page
)


def _credit(connection: Connection, order: DocCommand, posted: Any) -> object:
    """A credit note as the form sent it: one row per invoice line, those with a quantity
    (a return) or an amount (a price correction) are its lines; checked with the API's
    ``CreditNoteIn``, the first problem named."""
    kind = _posted(posted, "kind", 16)
    field = "qty" if kind == "return" else "amount"
    lines = [
        {"invoice_line": row["invoice_line"], field: row[field]}
        for row in posted_rows(posted, ("invoice_line", "qty", "amount"))
        if row.get(field)
    ]
    body: dict[str, Any] = {"kind": kind, "lines": lines, "reason": order.reason or ""}
    for name in ("credit_date", "return_id"):
        if value := _posted(posted, name, 64):
            body[name] = value
    try:
        checked = CreditNoteIn.model_validate(body)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "credit"
        raise InvalidError(f"{where}: {first['msg']}") from None
    given = receivables.CreditInput(
        kind=receivables.CreditKind(checked.kind),
        reason=checked.reason,
        credit_date=checked.credit_date or _today(),
        return_id=checked.return_id,
        lines=[
            receivables.CreditLineInput(
                invoice_line=line.invoice_line, qty=line.qty, amount=line.amount
            )
            for line in checked.lines
        ],
    )
    return receivables.credit_invoice(connection, order, given)


command_route(
    money_pages, INVOICES, "credit", "sales_invoice.credit", run=_credit, page=_invoice_page
)


def _invoice_form(
    request: Request,
    principal: Principal,
    shipment: shipping.Shipment | None,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "invoice_form.html",
        {"shipment": shipment, "form": form, "errors": errors},
        principal=principal,
        status_code=status_code,
    )


def _shipment_for(
    connection: Connection, principal: Principal, shipment_id: str | None
) -> shipping.Shipment | None:
    if not shipment_id:
        return None
    return shipping.get_shipment(connection, shipment_id, visible=principal.sites)


@money_pages.get("/sales-invoices/new", dependencies=[Requires("sales_invoice.create")])
def new_invoice_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    shipment_id: ShipmentQuery = None,
) -> HTMLResponse:
    """Invoice one shipment (the API invoices a shipment at a time) at its order's
    prices; the due date follows from the customer's payment terms."""
    shipment = _shipment_for(connection, principal, shipment_id)
    form = {"invoice_date": _today().isoformat(), "idempotency_key": str(uuid.uuid4())}
    return _invoice_form(request, principal, shipment, form, {})


@money_pages.post("/sales-invoices/new", dependencies=[Requires("sales_invoice.create")])
async def create_invoice_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    shipment_id: ShipmentQuery = None,
) -> Response:
    """Checked with the API's ``SalesInvoiceIn``; a shipment invoiced already is refused
    with the invoice's id."""
    shipment = _shipment_for(connection, principal, shipment_id)
    if shipment is None:
        raise InvalidError("shipment: choose a shipment")
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form = {
        "invoice_date": _posted(posted, "invoice_date", 10),
        "idempotency_key": _posted(posted, "idempotency_key"),
    }
    body = {"shipment_id": shipment.shipment_id, "invoice_date": form["invoice_date"] or None}
    checked, errors = validate(SalesInvoiceIn, body, _)
    if not errors:
        try:
            made = receivables.create_invoice(
                connection,
                shipment_id=shipment.shipment_id,
                invoice_date=checked.invoice_date or _today(),
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                claim=form_claim(request, principal, form["idempotency_key"], raw),
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{INVOICES}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = refusal_key(refused, [], "invoice_date")
            errors[key] = reason
        else:
            return redirect(request, url(f"{INVOICES}/view", id=made.invoice_id))
    return _invoice_form(request, principal, shipment, form, errors, status_code=422)


# --- receivables ageing --------------------------------------------------------------------


CHART_WIDTH: Final = 100
"""The bars' length scale: the largest bucket is this many units of the SVG's viewBox."""


def chart_bars(totals: dict[str, Decimal]) -> list[dict[str, Any]]:
    """Each bucket's bar, as a length of the chart's scale (the largest is the whole):
    drawn on the server as inline SVG, so the chart needs no script and no CDN. The
    lengths are for the eye only; the figures next to the bars are the exact amounts."""
    largest = max(totals.values(), default=Decimal(0))
    return [
        {
            "bucket": name,
            "amount": amount,
            "length": 0
            if largest <= 0
            else max(1, int((amount * CHART_WIDTH / largest).to_integral_value()))
            if amount > 0
            else 0,
        }
        for name, amount in totals.items()
    ]


@money_pages.get("/receivables-ageing", dependencies=[Requires("receivable.read")])
def ageing_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    on: Annotated[str, Query(max_length=10)] = "",
    customer: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """应收账龄: per customer, what is outstanding on a day by days past due, and the
    totals as a bar chart; any past day can be asked for."""
    _ = gettext_for(i18n.language_of(request))
    problem = ""
    day = _today()
    if on:
        try:
            day = date.fromisoformat(on)
        except ValueError:
            problem = _("That is not a date; the ageing is shown as of today.")
    customer_text = _clean(customer)
    found = receivables.ageing(
        connection, on=day, customer=customer_text or None, visible=principal.sites
    )
    totals = {
        name: sum((each.buckets[name] for each in found), Decimal(0))
        for name in receivables.BUCKETS
    }
    return render(
        request,
        "invoice_ageing.html",
        {
            "on": day,
            "customer": customer_text,
            "problem": problem,
            "rows": found,
            "totals": totals,
            "total": sum(totals.values(), Decimal(0)),
            "bars": chart_bars(totals),
            "buckets": receivables.BUCKETS,
            "bucket_labels": BUCKET_LABELS,
            "chart_width": CHART_WIDTH,
            "url": url,
        },
        principal=principal,
        status_code=422 if problem else 200,
    )
