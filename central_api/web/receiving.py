"""The console's receiving pages at central: receipts with QC, purchase returns, supplier
invoices with their three-way match.

Thin over ``services/receiving.py`` with the API routes' actions (``purchase_receipt.read``,
``purchase_receipt.qc``, ``supplier_invoice.approve``...), the user's sites as ``visible``
(another site's document is a 404) and the request's audit context, as the PO pages are
(:mod:`central_api.web.purchasing`). Every form and command carries an
``Idempotency-Key`` made when the page was drawn, and a command the document's version
as ``If-Match`` (a stale page is refused with 412 and says so).

A form is drawn from the PO it is entered against: one row per PO line, so a clerk types
quantities next to the line they belong to and never a line number. A receipt or a return
carries no price; a supplier invoice is money through and through, so its form is refused
to a role without the financial field group and its page drops every figure for one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import projections
from central_api.api.permissions import Requires
from central_api.core.config import Settings
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, InvalidError, NotFoundError
from central_api.schemas.receiving import InvoiceIn, ReceiptIn, ReturnIn
from central_api.services import purchasing as purchases
from central_api.services import receiving as service
from central_api.services.documents import DocCommand
from central_api.services.idempotency import IdempotencyClaim, IdempotentReplay
from central_api.services.projections import Projections
from central_api.services.sites import list_locations
from central_api.web import i18n
from central_api.web.forms import validate
from central_api.web.purchasing import (
    _REFUSALS,
    PAGE,
    POLL_SECONDS,
    STATUS_LABELS,
    VERB_LABELS,
    IdQuery,
    _if_match,
    _posted,
    _row_key,
    _sites,
    _status_of,
    document_list,
    options,
    posted_rows,
    refusal_key,
    site_filter,
    url,
)
from central_api.web.render import (
    BUY,
    CONSOLE_ROOT,
    N_,
    NAVIGATION,
    NavEntry,
    gettext_for,
    render,
)
from central_api.web.routes import form_claim, redirect
from jxc.contract import Code

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

RECEIPTS: Final = f"{CONSOLE_ROOT}/receipts"
RETURNS: Final = f"{CONSOLE_ROOT}/purchase-returns"
INVOICES: Final = f"{CONSOLE_ROOT}/supplier-invoices"

PoQuery = Annotated[Code | None, Query(alias="po")]
SiteQuery = Annotated[str, Query(alias="site", max_length=64)]
AfterQuery = Annotated[Code | None, Query()]

QC_CHOICES: Final = ("accepted", "quarantine", "rejected")
INVOICE_VERBS: Final[dict[str, frozenset[service.InvoiceStatus]]] = {
    "approve": frozenset({service.InvoiceStatus.HELD}),
    "dispute": frozenset({service.InvoiceStatus.HELD, service.InvoiceStatus.MATCHED}),
}
"""Which invoice states offer which button (finance's decision on a match)."""
OUTCOME_LABELS: Final[dict[str, str]] = {
    "price": N_("Price differs from the PO"),
    "quantity": N_("More than was accepted"),
    "amount": N_("Amount differs"),
    "tax_rate": N_("Tax rate differs from the PO"),
    "no_po_price": N_("The PO line has no price"),
}
"""The match's outcome words (the service's ``outcome``, comma-separated) as people read them."""


PageFn = Callable[..., HTMLResponse]


def command_route(
    router: APIRouter,
    base: str,
    verb: str,
    action: str,
    *,
    run: Callable[..., object],
    page: PageFn,
    projected: bool = False,
    needs_settings: bool = False,
) -> None:
    """``POST <base>/<verb>?id=``: one command with the page's version and key; a refusal
    answers with the document's page, its reason over it, and the refusal's status.

    ``run(connection, order, posted)``; with ``projected``, ``run(connection, order,
    posted, projections)``: the app's read-model projections, for a command that books
    stock through central's own events (valuation and order progress move with it in the
    same transaction, as for the API route); with ``needs_settings`` the settings come
    last (a policy such as segregation of duties is central's setting, not the page's)."""

    async def command(
        request: Request,
        *,
        doc_id: IdQuery,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
        settings: SettingsDep,
    ) -> Response:
        raw = await request.body()
        posted = await request.form()
        order = DocCommand(
            doc_id=doc_id,
            actor=principal.name,
            visible=principal.sites,
            if_match=_if_match(posted),
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
            reason=_posted(posted, "reason", 1000) or None,
        )
        try:
            extra: list[object] = [projections(request)] if projected else []
            if needs_settings:
                extra.append(settings)
            run(connection, order, posted, *extra)
        except IdempotentReplay:
            pass
        except _REFUSALS as refused:
            return page(
                request,
                connection,
                principal,
                doc_id,
                refusal=str(refused),
                status_code=_status_of(refused),
            )
        return redirect(request, url(f"{base}/view", id=doc_id))

    command.__name__ = f"{verb}_{base.rsplit('/', 1)[1].replace('-', '_')}_page"
    router.post(f"{base.removeprefix(CONSOLE_ROOT)}/{verb}", dependencies=[Requires(action)])(
        command
    )


def _locations(request: Request, connection: Connection, site_id: str) -> list[tuple[str, str]]:
    found, _after = list_locations(connection, site_id=site_id, after=None, limit=1000)
    return [("", "—"), *options(request, [loc for loc in found if loc.active], "code")]


def _po_for(
    connection: Connection, principal: Principal, po_id: str | None
) -> purchases.PurchaseOrder | None:
    if not po_id:
        return None
    return purchases.get_purchase_order(connection, po_id, visible=principal.sites)


def _po_rows(
    po: purchases.PurchaseOrder | None, fill: Callable[[purchases.PoLine], dict[str, str]]
) -> list[dict[str, str]]:
    """One form row per PO line, labelled with the line and what is still open."""
    if po is None:
        return []
    return [
        {
            "po_line": str(line.line_no),
            "label": f"#{line.line_no} {line.item_code} · {format(line.qty, 'f')} {line.uom}",
            **fill(line),
        }
        for line in po.lines
    ]


def _labelled(
    rows: list[dict[str, str]], po: purchases.PurchaseOrder | None
) -> list[dict[str, str]]:
    """Posted rows with their PO line's label again (the label is not posted)."""
    labels = {row["po_line"]: row["label"] for row in _po_rows(po, lambda _line: {})}
    return [{**row, "label": labels.get(row.get("po_line", ""), "")} for row in rows]


def _line_body(row: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in row.items() if value and name != "label"}


@dataclass(frozen=True, slots=True)
class PoForm:
    """A posted form entered against a PO, read and checked whole: what a form against a
    PO (receipt, return, invoice) has in common before its own service call."""

    po: purchases.PurchaseOrder
    form: dict[str, Any]
    used: list[tuple[int, dict[str, str]]]
    checked: Any
    errors: dict[str, str]
    claim: IdempotencyClaim | None


async def read_po_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    po_id: str | None,
    *,
    header: dict[str, int],
    fields: tuple[str, ...],
    model: type[Any],
    empty: str,
) -> PoForm:
    """The header fields (name → longest accepted), the line rows that have a quantity,
    checked with the API's ``model``; ``empty`` (a msgid) when no row has one."""
    po = _po_for(connection, principal, po_id)
    if po is None:
        raise InvalidError("po: choose a purchase order")
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    rows = _labelled(posted_rows(posted, fields), po)
    form: dict[str, Any] = {name: _posted(posted, name, limit) for name, limit in header.items()}
    form |= {"lines": rows, "idempotency_key": _posted(posted, "idempotency_key")}
    used = [(i, row) for i, row in enumerate(rows) if row["qty"]]
    body = {
        "po_id": po.po_id,
        **{name: form[name] for name in header},
        "lines": [_line_body(row) for _i, row in used],
    }
    checked, found = validate(model, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    if not used:
        errors["lines"] = _(empty)
    claim = form_claim(request, principal, form["idempotency_key"], raw)
    return PoForm(po, form, used, checked, errors, claim)


def _po_documents(
    request: Request,
    connection: Connection,
    principal: Principal,
    lister: Callable[..., tuple[list[Any], str | None]],
    query: tuple[str | None, str, str | None],
    *,
    template: str,
    key: str,
    base: str,
) -> HTMLResponse:
    """A list of documents entered against POs (receipts, returns), filtered by PO and
    site, of the user's sites only, paged."""
    po_id, site, after = query
    return document_list(
        request,
        connection,
        principal,
        lister,
        {"po_id": po_id or None},
        after=after,
        site=site,
        filters={"po": po_id or ""},
        template=template,
        key=key,
        base=base,
        status_labels=STATUS_LABELS,
    )


# --- receipts ------------------------------------------------------------------------------


@pages.get("/receipts", dependencies=[Requires("purchase_receipt.read")])
def receipts_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    po_id: PoQuery = None,
    site: SiteQuery = "",
    after: AfterQuery = None,
) -> HTMLResponse:
    """Receipts entered at central (采购入库), newest id last; only the user's sites."""
    return _po_documents(
        request,
        connection,
        principal,
        service.list_receipts,
        (po_id, site, after),
        template="receipts.html",
        key="receipts",
        base=RECEIPTS,
    )


def _receipt_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    receipt_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    receipt = service.get_receipt(connection, receipt_id, visible=principal.sites)
    may_qc = principal.can("purchase_receipt.qc")
    return render(
        request,
        "receipt.html",
        {
            "receipt": receipt,
            "may_qc": may_qc,
            "locations": _locations(request, connection, receipt.site_id) if may_qc else [],
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{receipt.version}"'},
    )


@pages.get("/receipts/view", dependencies=[Requires("purchase_receipt.read")])
def receipt_page(
    request: Request, receipt_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A receipt's lines with their QC status; release or reject for what is quarantined."""
    return _receipt_page(request, connection, principal, receipt_id)


def _qc(verb: str) -> Callable[[Connection, DocCommand, Any, Projections | None], object]:
    def run(
        connection: Connection, order: DocCommand, posted: Any, projected: Projections | None
    ) -> object:
        number = _posted(posted, "line_no", 10)
        if not number.isdigit() or not 1 <= int(number) <= 10_000:
            raise InvalidError("line_no: choose a line")
        return service.decide_quarantine(
            connection,
            service.QcCommand(
                command=order,
                line_no=int(number),
                location=_posted(posted, "location", 64) or None,
            ),
            verb,
            projections=projected,
        )

    return run


for _verb in ("release", "reject"):
    command_route(
        pages,
        RECEIPTS,
        _verb,
        "purchase_receipt.qc",
        run=_qc(_verb),
        page=_receipt_page,
        projected=True,
    )


_RECEIPT_FIELDS: Final = ("po_line", "qty", "uom", "qc", "location", "lot", "expiry")


def _receipt_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    po: purchases.PurchaseOrder | None,
    *,
    form: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    _ = gettext_for(i18n.language_of(request))
    return render(
        request,
        "receipt_form.html",
        {
            "po": po,
            "form": form,
            "errors": errors,
            "qc_choices": [(qc, _(STATUS_LABELS[qc])) for qc in QC_CHOICES],
            "locations": [] if po is None else _locations(request, connection, po.site_id),
            "receivable": po is not None and po.status in purchases.RECEIVABLE,
            "status_labels": STATUS_LABELS,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/receipts/new", dependencies=[Requires("purchase_receipt.create")])
def new_receipt_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, po_id: PoQuery = None
) -> HTMLResponse:
    """Scan or type the PO first; then one row per line: quantity, QC, location, lot."""
    po = _po_for(connection, principal, po_id)
    form: dict[str, Any] = {
        "note": "",
        "lines": _po_rows(po, lambda _line: {"qc": "accepted"}),
        "idempotency_key": str(uuid.uuid4()),
    }
    return _receipt_form(request, connection, principal, po, form=form, errors={})


@pages.post("/receipts/new", dependencies=[Requires("purchase_receipt.create")])
async def create_receipt_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    po_id: PoQuery = None,
) -> Response:
    """Rows with a quantity are the receipt's lines, checked with the API's ``ReceiptIn``;
    one service call books them all or none."""
    read = await read_po_form(
        request,
        connection,
        principal,
        po_id,
        header={"note": 1000},
        fields=_RECEIPT_FIELDS,
        model=ReceiptIn,
        empty=N_("Enter the quantity received on at least one line."),
    )
    po, form, used, checked, errors = read.po, read.form, read.used, read.checked, read.errors
    if not errors:
        try:
            made = service.create_receipt(
                connection,
                po_id=po.po_id,
                note=checked.note,
                lines=[
                    service.ReceiptLineInput(
                        **(line.model_dump() | {"qc": service.QcStatus(line.qc)})
                    )
                    for line in checked.lines
                ],
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                projections=getattr(request.app.state, "projections", None),
                claim=read.claim,
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{RECEIPTS}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = refusal_key(refused, used, "note")
            errors[key] = reason
        else:
            return redirect(request, url(f"{RECEIPTS}/view", id=made.receipt_id))
    return _receipt_form(
        request, connection, principal, po, form=form, errors=errors, status_code=422
    )


# --- purchase returns ------------------------------------------------------------------------


@pages.get("/purchase-returns", dependencies=[Requires("purchase_return.read")])
def returns_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    po_id: PoQuery = None,
    site: SiteQuery = "",
    after: AfterQuery = None,
) -> HTMLResponse:
    """Goods sent back to suppliers (采购退货), with their reasons; only the user's sites."""
    return _po_documents(
        request,
        connection,
        principal,
        service.list_returns,
        (po_id, site, after),
        template="purchase_returns.html",
        key="returns",
        base=RETURNS,
    )


@pages.get("/purchase-returns/view", dependencies=[Requires("purchase_return.read")])
def return_page(
    request: Request, return_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    found = service.get_return(connection, return_id, visible=principal.sites)
    return render(
        request,
        "purchase_return.html",
        {"ret": found, "url": url},
        principal=principal,
        headers={"ETag": f'"{found.version}"'},
    )


_RETURN_FIELDS: Final = ("po_line", "qty", "uom", "location", "lot")


def _return_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    po: purchases.PurchaseOrder | None,
    *,
    form: dict[str, Any],
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "purchase_return_form.html",
        {
            "po": po,
            "form": form,
            "errors": errors,
            "locations": [] if po is None else _locations(request, connection, po.site_id),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/purchase-returns/new", dependencies=[Requires("purchase_return.create")])
def new_return_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, po_id: PoQuery = None
) -> HTMLResponse:
    po = _po_for(connection, principal, po_id)
    form: dict[str, Any] = {
        "reason": "",
        "lines": _po_rows(po, lambda _line: {}),
        "idempotency_key": str(uuid.uuid4()),
    }
    return _return_form(request, connection, principal, po, form=form, errors={})


@pages.post("/purchase-returns/new", dependencies=[Requires("purchase_return.create")])
async def create_return_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    po_id: PoQuery = None,
) -> Response:
    """Checked whole with the API's ``ReturnIn``; booked at once, all lines or none."""
    read = await read_po_form(
        request,
        connection,
        principal,
        po_id,
        header={"reason": 1000},
        fields=_RETURN_FIELDS,
        model=ReturnIn,
        empty=N_("Enter the quantity returned on at least one line."),
    )
    po, form, used, checked, errors = read.po, read.form, read.used, read.checked, read.errors
    if not errors:
        try:
            made = service.create_return(
                connection,
                po_id=po.po_id,
                reason=checked.reason,
                lines=[service.ReturnLineInput(**line.model_dump()) for line in checked.lines],
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                projections=getattr(request.app.state, "projections", None),
                claim=read.claim,
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{RETURNS}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = refusal_key(refused, used, "reason")
            errors[key] = reason
        else:
            return redirect(request, url(f"{RETURNS}/view", id=made.return_id))
    return _return_form(
        request, connection, principal, po, form=form, errors=errors, status_code=422
    )


# --- supplier invoices -----------------------------------------------------------------------

_INVOICE_MONEY: Final = (
    "unit_price",
    "tax_rate",
    "amount",
    "po_price",
    "price_diff",
    "amount_diff",
)


def _invoice_view(invoice: service.Invoice, principal: Principal) -> dict[str, Any]:
    """An invoice as a page may show it: for a role without the financial group, the
    quantities and the match's outcome, never a price, a rate or an amount."""
    view = asdict(invoice)
    view["status"] = invoice.status.value
    for line, data in zip(invoice.lines, view["lines"], strict=True):
        data["outcomes"] = [] if line.outcome == "ok" else line.outcome.split(",")
        if principal.financial:
            data["tax_amount"] = line.tax_amount
        else:
            for name in _INVOICE_MONEY:
                data.pop(name, None)
    if principal.financial:
        view["amount"] = invoice.amount
        view["tax_amount"] = invoice.tax_amount
    return view


@pages.get("/supplier-invoices", dependencies=[Requires("supplier_invoice.read")])
def invoices_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "",
    po_id: PoQuery = None,
    after: AfterQuery = None,
) -> HTMLResponse:
    """Supplier invoices (采购发票) by status: held ones wait for finance's decision."""
    chosen = status if status in service.InvoiceStatus.__members__.values() else ""
    found, next_after = service.list_invoices(
        connection,
        status=service.InvoiceStatus(chosen) if chosen else None,
        po_id=po_id or None,
        site_id=None,
        visible=principal.sites,
        after=after or None,
        limit=PAGE,
    )
    filters = {"status": chosen, "po": po_id or ""}
    return render(
        request,
        "supplier_invoices.html",
        {
            "invoices": [_invoice_view(each, principal) for each in found],
            "filters": filters,
            "statuses": [s.value for s in service.InvoiceStatus],
            "more": None if next_after is None else url(INVOICES, **filters, after=next_after),
            "status_labels": STATUS_LABELS,
            "url": url,
        },
        principal=principal,
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
    invoice = service.get_invoice(connection, invoice_id, visible=principal.sites)
    commands = [
        verb
        for verb, states in INVOICE_VERBS.items()
        if invoice.status in states and principal.can("supplier_invoice.approve")
    ]
    return render(
        request,
        "supplier_invoice.html",
        {
            "invoice": _invoice_view(invoice, principal),
            "commands": commands,
            "outcome_labels": OUTCOME_LABELS,
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{invoice.version}"'},
    )


@pages.get("/supplier-invoices/view", dependencies=[Requires("supplier_invoice.read")])
def invoice_page(
    request: Request, invoice_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The three-way match: per line the invoiced price and quantity against the PO's price
    and the quantity accepted at receiving, and every difference beyond tolerance."""
    return _invoice_page(request, connection, principal, invoice_id)


def _decide(verb: str) -> Callable[[Connection, DocCommand, Any, Settings], object]:
    def run(
        connection: Connection, order: DocCommand, _posted_form: Any, settings: Settings
    ) -> object:
        if not order.reason:
            raise InvalidError("reason: say why")
        return service.decide_invoice(
            connection, order, verb, segregation=settings.supplier_invoice_sod
        )

    return run


for _verb in INVOICE_VERBS:
    command_route(
        pages,
        INVOICES,
        _verb,
        "supplier_invoice.approve",
        run=_decide(_verb),
        page=_invoice_page,
        needs_settings=True,
    )


_INVOICE_FIELDS: Final = ("po_line", "qty", "unit_price", "tax_rate", "amount")


def _invoice_form(
    request: Request,
    principal: Principal,
    po: purchases.PurchaseOrder | None,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "supplier_invoice_form.html",
        {"po": po, "form": form, "errors": errors},
        principal=principal,
        status_code=status_code,
    )


def _require_money(principal: Principal) -> None:
    if not principal.financial:
        raise ForbiddenError("your roles do not show prices, so you may not enter invoices")


@pages.get("/supplier-invoices/new", dependencies=[Requires("supplier_invoice.create")])
def new_invoice_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, po_id: PoQuery = None
) -> HTMLResponse:
    """The supplier's invoice against a PO: its number, and per line quantity, price and
    tax as printed (the PO's price and rate filled in to be corrected)."""
    _require_money(principal)
    po = _po_for(connection, principal, po_id)

    def fill(line: purchases.PoLine) -> dict[str, str]:
        return {
            "unit_price": "" if line.unit_price is None else format(line.unit_price, "f"),
            "tax_rate": "" if line.tax_rate is None else format(line.tax_rate, "f"),
        }

    form: dict[str, Any] = {
        "invoice_no": "",
        "lines": _po_rows(po, fill),
        "idempotency_key": str(uuid.uuid4()),
    }
    return _invoice_form(request, principal, po, form, {})


@pages.post("/supplier-invoices/new", dependencies=[Requires("supplier_invoice.create")])
async def create_invoice_form(
    request: Request,
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    settings: SettingsDep,
    po_id: PoQuery = None,
) -> Response:
    """Checked with the API's ``InvoiceIn`` and matched at once by the service: the page
    that opens says matched, or held with the differences."""
    _require_money(principal)
    read = await read_po_form(
        request,
        connection,
        principal,
        po_id,
        header={"invoice_no": 64},
        fields=_INVOICE_FIELDS,
        model=InvoiceIn,
        empty=N_("Enter the quantity invoiced on at least one line."),
    )
    po, form, used, checked, errors = read.po, read.form, read.used, read.checked, read.errors
    if not errors:
        try:
            made = service.create_invoice(
                connection,
                invoice_no=checked.invoice_no,
                po_id=po.po_id,
                lines=[service.InvoiceLineInput(**line.model_dump()) for line in checked.lines],
                tolerances=service.Tolerances(
                    price=settings.invoice_price_tolerance, qty=settings.invoice_qty_tolerance
                ),
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                claim=read.claim,
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{INVOICES}/view", id=replay.resource_id))
        except (*_REFUSALS, NotFoundError) as refused:
            key, reason = refusal_key(refused, used, "invoice_no")
            errors[key] = reason
        else:
            return redirect(request, url(f"{INVOICES}/view", id=made.invoice_id))
    return _invoice_form(request, principal, po, form, errors, status_code=422)


# --- QC of the cartons an edge put in quarantine -----------------------------------------

CARTONS: Final = f"{CONSOLE_ROOT}/edge-cartons"
QC_LABELS: Final[dict[str, str]] = {
    "pending": N_("Awaiting QC"),
    "released": N_("Released"),
    "rejected": N_("Rejected"),
}
"""Where an edge's carton stands in QC (``EdgeQc``), as a chip reads it."""


def _stock_choices(
    request: Request, connection: Connection, site_ids: set[str]
) -> dict[str, list[tuple[str, str]]]:
    """Per site, the active locations a released carton may go to (storage, receiving):
    offering a quarantine or damaged bin would only earn a refusal."""
    found: dict[str, list[tuple[str, str]]] = {}
    for site_id in sorted(site_ids):
        rows, _after = list_locations(connection, site_id=site_id, after=None, limit=1000)
        fit = [loc for loc in rows if loc.active and loc.kind in service.STOCK_KINDS]
        found[site_id] = [("", "—"), *options(request, fit, "code")]
    return found


def _carton_context(principal: Principal) -> dict[str, Any]:
    return {
        "may_qc": principal.can("purchase_receipt.qc"),
        "key": str(uuid.uuid4()),
        "qc_labels": QC_LABELS,
        "verb_labels": VERB_LABELS,
        "url": url,
    }


@pages.get("/edge-cartons", dependencies=[Requires("purchase_receipt.read")])
def edge_cartons_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    po_id: PoQuery = None,
    site: SiteQuery = "",
) -> HTMLResponse:
    """QC's work list: the cartons the sites' receiving stations put in quarantine (short
    weight, expired lot, over-receipt...), oldest first, each with the station's reason and
    the release and reject buttons. Only the user's sites."""
    site_text = site_filter(principal, site)
    cartons = service.pending_edge_cartons(
        connection,
        visible=principal.sites,
        site_id=site_text or None,
        po_id=po_id or None,
        limit=PAGE,
    )
    context = _carton_context(principal)
    return render(
        request,
        "edge_cartons.html",
        {
            **context,
            "cartons": cartons,
            "filters": {"po": po_id or "", "site": site_text},
            "sites": _sites(connection, principal),
            "locations": _stock_choices(request, connection, {c.site_id for c in cartons})
            if context["may_qc"]
            else {},
            "full": len(cartons) >= PAGE,
        },
        principal=principal,
    )


def _carton_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    event_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    carton = service.get_edge_carton(connection, event_id, visible=principal.sites)
    context = _carton_context(principal)
    pending = carton.qc is service.EdgeQc.PENDING
    return render(
        request,
        "edge_carton.html",
        {
            **context,
            "carton": carton,
            "locations": _stock_choices(request, connection, {carton.site_id})
            if context["may_qc"] and pending
            else {},
            "refusal": refusal,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/edge-cartons/view", dependencies=[Requires("purchase_receipt.read")])
def edge_carton_page(
    request: Request, event_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """One carton an edge booked against a PO line: the station's reason, and the QC
    decision once taken (who, when, why, where to) or the buttons while pending."""
    return _carton_page(request, connection, principal, event_id)


def _edge_qc(verb: str) -> Callable[[Connection, DocCommand, Any, Projections | None], object]:
    def run(
        connection: Connection, order: DocCommand, posted: Any, projected: Projections | None
    ) -> object:
        command = service.EdgeQcCommand(
            actor=order.actor,
            visible=order.visible,
            if_match=None,
            audit=order.audit,
            claim=order.claim,
            reason=order.reason,
            event_id=order.doc_id,
            location=(_posted(posted, "location", 64) or None) if verb == "release" else None,
        )
        return service.decide_edge_quarantine(connection, command, verb, projections=projected)

    return run


for _verb in ("release", "reject"):
    command_route(
        pages,
        CARTONS,
        _verb,
        "purchase_receipt.qc",
        run=_edge_qc(_verb),
        page=_carton_page,
        projected=True,
    )


# --- the receiving of a PO, live ---------------------------------------------------------


def _receiving_context(connection: Connection, principal: Principal, po_id: str) -> dict[str, Any]:
    po = purchases.get_purchase_order(connection, po_id, visible=principal.sites)
    events = service.po_events(connection, po_id, visible=principal.sites)
    return {
        "po": po,
        "events": events,
        "pending": sum(1 for event in events if event.qc is service.EdgeQc.PENDING),
        "live": po.status in purchases.RECEIVABLE,
        "poll": POLL_SECONDS,
        "qc_labels": QC_LABELS,
        "status_labels": STATUS_LABELS,
        "url": url,
    }


@pages.get("/po-receiving", dependencies=[Requires("purchase_receipt.read")])
def po_receiving_page(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """Every receipt, QC move and return booked against a PO, from its site's edge and from
    central, as they arrive: the page is a frame around ``/po-receiving/live``, which htmx
    fetches again every ``POLL_SECONDS`` while the PO is receivable (the PO page's lines
    and the dashboard do the same), so a carton the dock books shows without a reload."""
    context = _receiving_context(connection, principal, po_id)
    return render(request, "po_receiving.html", context, principal=principal)


@pages.get("/po-receiving/live", dependencies=[Requires("purchase_receipt.read")])
def po_receiving_live(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The receiving log alone: what the page polls."""
    context = _receiving_context(connection, principal, po_id)
    return render(request, "po_receiving_live.html", context, principal=principal)


def _add_to_menu() -> None:
    """QC's work list right after the receipts (once)."""
    if any(entry.path == CARTONS for entry in NAVIGATION):
        return
    at = next(
        (i + 1 for i, entry in enumerate(NAVIGATION) if entry.path == RECEIPTS), len(NAVIGATION)
    )
    NAVIGATION.insert(
        at, NavEntry(CARTONS, N_("Cartons awaiting QC"), "purchase_receipt.read", group=BUY)
    )


_add_to_menu()
