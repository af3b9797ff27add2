"""The console's purchasing pages: requisitions, purchase orders, receiving exceptions.

Thin over ``services/purchasing.py``, as the API routes are: each page declares the API
route's action (``purchase_order.read``, ``purchase_order.approve``...), passes the user's
sites as ``visible`` (a document of another site is a 404, as in the API) and the
request's audit context. A command button posts the version the page was rendered from
(sent to the service as ``If-Match``, so a stale view is refused with 412 instead of
approving something the user has not seen) and an ``Idempotency-Key`` made when the page
was rendered (a double click is one command). A refusal (403, 409, 412) comes back as the
same page with the service's reason over it and the refusal's status.

Prices, tax rates and amounts are dropped by the handler for a role without the financial
field group (``_po_view``), so a clerk's PO page, its live lines and its print view
cannot contain one.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.permissions import Requires
from central_api.core.config import Settings
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import (
    ConflictError,
    ForbiddenError,
    InvalidError,
    PreconditionFailedError,
)
from central_api.schemas.purchasing import PurchaseOrderIn, RequisitionIn
from central_api.services import purchasing as service
from central_api.services.audit import AuditContext
from central_api.services.idempotency import IdempotentReplay
from central_api.services.partners import PartnerFilter, list_partners
from central_api.services.sites import list_sites
from central_api.web import i18n
from central_api.web.forms import validate
from central_api.web.render import CONSOLE_ROOT, N_, environment, gettext_for, render
from central_api.web.routes import form_claim, redirect
from jxc.contract import Code

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

POS: Final = f"{CONSOLE_ROOT}/purchase-orders"
REQS: Final = f"{CONSOLE_ROOT}/requisitions"
EXCEPTIONS: Final = f"{CONSOLE_ROOT}/purchase-exceptions"
PAGE: Final = 50
BLANK_LINES: Final = 3
"""Empty line rows a PO form offers beyond the lines it has (no script needed)."""
POLL_SECONDS: Final = 5
"""How often a receivable PO's page asks for its lines' received quantities."""

READ_PO = Requires("purchase_order.read")
CREATE_PO = Requires("purchase_order.create")
READ_REQ = Requires("requisition.read")
CREATE_REQ = Requires("requisition.create")
RESOLVE = Requires("purchase_exception.resolve")

IdQuery = Annotated[Code, Query(alias="id")]

STATUS_LABELS: Final[dict[str, str]] = {
    "draft": N_("Draft"),
    "submitted": N_("Submitted"),
    "approved": N_("Approved"),
    "rejected": N_("Rejected"),
    "ordered": N_("Ordered"),
    "sent": N_("Sent"),
    "partly_received": N_("Partly received"),
    "received": N_("Received"),
    "closed": N_("Closed"),
    "cancelled": N_("Cancelled"),
    "open": N_("Open"),
    "resolved": N_("Resolved"),
    "over_receipt": N_("Over-receipt"),
    "po_not_open": N_("PO not open"),
    "unknown_line": N_("Unknown line"),
    "wrong_site": N_("Wrong site"),
    "wrong_item": N_("Wrong item"),
    "unknown_unit": N_("Unknown unit"),
    # receipts' QC, supplier invoices, sales orders
    "accepted": N_("Accepted"),
    "quarantine": N_("In quarantine"),
    "released": N_("Released"),
    "matched": N_("Matched"),
    "held": N_("Held"),
    "disputed": N_("Disputed"),
    "confirmed": N_("Confirmed"),
}
"""The msgid of each status and exception kind a page shows."""

VERB_LABELS: Final[dict[str, str]] = {
    "approve": N_("Approve"),
    "send": N_("Send to supplier"),
    "cancel": N_("Cancel"),
    "close": N_("Close"),
    "submit": N_("Submit for approval"),
    "reject": N_("Reject"),
    "release": N_("Release"),
    "dispute": N_("Dispute"),
    "confirm": N_("Confirm"),
    "reserve": N_("Reserve again"),
}

PO_VERBS: Final[dict[str, frozenset[service.PoStatus]]] = {
    "approve": frozenset({service.PoStatus.DRAFT}),
    "send": frozenset({service.PoStatus.APPROVED}),
    "cancel": frozenset({service.PoStatus.DRAFT, service.PoStatus.APPROVED, service.PoStatus.SENT}),
    "close": frozenset({service.PoStatus.PARTLY_RECEIVED, service.PoStatus.RECEIVED}),
}
"""Which states offer which command button (the service decides; this only hides a
button that would certainly be refused)."""

REQ_VERBS: Final[dict[str, tuple[str, frozenset[service.ReqStatus]]]] = {
    "submit": ("requisition.create", frozenset({service.ReqStatus.DRAFT})),
    "approve": ("requisition.approve", frozenset({service.ReqStatus.SUBMITTED})),
    "reject": ("requisition.approve", frozenset({service.ReqStatus.SUBMITTED})),
    "cancel": (
        "requisition.cancel",
        frozenset({service.ReqStatus.DRAFT, service.ReqStatus.SUBMITTED}),
    ),
}
REASONED: Final = frozenset({"cancel", "close", "reject", "dispute"})
"""Commands whose button comes with a reason field (and a confirmation)."""

_REFUSALS = (ConflictError, PreconditionFailedError, ForbiddenError, InvalidError)
_REFUSAL_STATUS: Final = {
    ConflictError: 409,
    PreconditionFailedError: 412,
    ForbiddenError: 403,
    InvalidError: 422,
}


def url(base: str, **query: Any) -> str:
    return f"{base}?{urlencode({k: v for k, v in query.items() if v not in (None, '')})}"


def _status_of(refusal: Exception) -> int:
    for kind, status in _REFUSAL_STATUS.items():
        if isinstance(refusal, kind):
            return status
    return 400


def _posted(posted: Any, name: str, limit: int = 200) -> str:
    return str(posted.get(name, "")).strip()[:limit]


def _if_match(posted: Any) -> str | None:
    """The version the page showed, as the API's ``If-Match``; none if the form had none."""
    version = _posted(posted, "version", 20)
    return f'"{version}"' if version.isdigit() else None


def _sites(connection: ConnDep, principal: Principal) -> list[Any]:
    return [
        site
        for site in list_sites(connection, visible=principal.sites)
        if principal.sees_site(site.site_id)
    ]


def _suppliers(connection: ConnDep) -> list[Any]:
    found, _after = list_partners(
        connection, after=None, limit=500, filters=PartnerFilter(role="supplier", q=None)
    )
    return found


E = TypeVar("E", bound=Enum)
Lister = Callable[..., tuple[list[Any], str | None]]
"""A service's ``list_...``: it takes ``visible``, ``after`` and ``limit`` besides its filters."""


def status_filter(text: str, states: type[E]) -> tuple[str, E | None]:
    """A list's status filter: the known state chosen (its text and value), or none (an
    unknown word is ignored rather than refused: it came from an old link)."""
    known = next((state for state in states if state.value == text), None)
    return ("" if known is None else text), known


def site_filter(principal: Principal, site: str) -> str:
    """A list's site filter as printable text; a site outside the user's is a 403."""
    text = "".join(c for c in site if c.isprintable()).strip()
    if text and not principal.sees_site(text):
        raise ForbiddenError(f"site {text} is outside your sites")
    return text


def document_list(
    request: Request,
    connection: Connection,
    principal: Principal,
    lister: Lister,
    query: dict[str, Any],
    *,
    after: str | None,
    template: str,
    key: str,
    base: str,
    site: str | None = None,
    status: tuple[str, type[Enum]] | None = None,
    filters: dict[str, str] | None = None,
    view: Callable[[Any], Any] | None = None,
    **context: Any,
) -> HTMLResponse:
    """One page of a document list, the frame every list page shares: the lister's rows
    of the user's sites only (``visible``), ``PAGE`` at a time, the filters echoed, the
    user's sites to choose from and the next page's link with the same filters.
    ``query`` and ``filters`` are the service's own filters and how the page echoes them;
    ``site`` (checked against the user's sites) and ``status`` (the text and the states)
    are the filters most lists have; ``view`` makes a row what the template may see (a
    role without the financial group gets no figure); ``context`` is the rest."""
    query, filters = dict(query), dict(filters or {})
    if site is not None:
        filters["site"] = site_filter(principal, site)
        query["site_id"] = filters["site"] or None
    if status is not None:
        text, states = status
        filters["status"], query["status"] = status_filter(text, states)
        context.setdefault("statuses", [state.value for state in states])
    found, next_after = lister(
        connection, visible=principal.sites, after=after or None, limit=PAGE, **query
    )
    return render(
        request,
        template,
        {
            key: found if view is None else [view(each) for each in found],
            "filters": filters,
            "sites": _sites(connection, principal),
            "more": None if next_after is None else url(base, **filters, after=next_after),
            "url": url,
            **context,
        },
        principal=principal,
    )


def options(request: Request, records: list[Any], key: str) -> list[tuple[str, str]]:
    """``(code, "code name")`` of each record for a choice, the name in the page's language."""
    named = environment(i18n.language_of(request).locale).filters["named"]
    return [(getattr(r, key), f"{getattr(r, key)} {named(r)}") for r in records]


# --- views: what a template may see ---------------------------------------------------


def _po_view(po: service.PurchaseOrder, principal: Principal) -> dict[str, Any]:
    """A PO as a page may show it: no price, tax or amount for a role without the group."""
    view = asdict(po)
    view["status"] = po.status.value
    lines = []
    for line, data in zip(po.lines, view["lines"], strict=True):
        data["open_qty"] = line.open_qty
        if principal.financial:
            data["amount"] = line.amount
        else:
            data.pop("unit_price", None)
            data.pop("tax_rate", None)
        lines.append(data)
    view["lines"] = lines
    if principal.financial:
        view["amount"] = po.amount
    return view


def _commands(po: service.PurchaseOrder, principal: Principal) -> list[str]:
    return [
        verb
        for verb, states in PO_VERBS.items()
        if po.status in states and principal.can(f"purchase_order.{verb}")
    ]


# --- purchase orders ------------------------------------------------------------------


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@pages.get("/purchase-orders", dependencies=[READ_PO])
def purchase_orders_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "",
    supplier: Annotated[str, Query(max_length=64)] = "",
    site: Annotated[str, Query(max_length=64)] = "",
    date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    date_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> HTMLResponse:
    """POs of the user's sites, filtered by status, supplier, site and creation dates."""
    chosen_status = status if status in service.PoStatus.__members__.values() else ""
    first, last = _day(date_from), _day(date_to)
    if site and not principal.sees_site(site):
        raise ForbiddenError(f"site {site} is outside your sites")
    supplier_text = "".join(c for c in supplier if c.isprintable()).strip()
    site_text = "".join(c for c in site if c.isprintable()).strip()
    found, next_after = service.list_purchase_orders(
        connection,
        chosen=service.PoFilter(
            status=service.PoStatus(chosen_status) if chosen_status else None,
            supplier=supplier_text or None,
            site_id=site_text or None,
            created_from=None if first is None else datetime.combine(first, time(), UTC),
            created_to=None
            if last is None
            else datetime.combine(last + timedelta(days=1), time(), UTC),
            visible_sites=principal.sites,
        ),
        after=after or None,
        limit=PAGE,
    )
    filters = {
        "status": chosen_status,
        "supplier": supplier_text,
        "site": site_text,
        "from": "" if first is None else first.isoformat(),
        "to": "" if last is None else last.isoformat(),
    }
    return render(
        request,
        "purchase_orders.html",
        {
            "orders": [_po_view(po, principal) for po in found],
            "filters": filters,
            "statuses": [s.value for s in service.PoStatus],
            "sites": _sites(connection, principal),
            "more": None if next_after is None else url(POS, **filters, after=next_after),
            "status_labels": STATUS_LABELS,
            "url": url,
        },
        principal=principal,
    )


def _po_page(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    po: service.PurchaseOrder,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    exceptions, _after = service.list_exceptions(
        connection,
        status=None,
        site_id=None,
        po_id=po.po_id,
        visible=principal.sites,
        after=None,
        limit=100,
    )
    return render(
        request,
        "purchase_order.html",
        {
            "po": _po_view(po, principal),
            "commands": _commands(po, principal),
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "live": po.status in service.RECEIVABLE,
            "poll": POLL_SECONDS,
            "exceptions": exceptions,
            "can_edit": po.status is service.PoStatus.DRAFT
            and principal.can("purchase_order.create")
            and not any(line.req_id for line in po.lines),
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{po.version}"'},
    )


@pages.get("/purchase-orders/view", dependencies=[READ_PO])
def purchase_order_page(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """Header, lines with received and open quantities, commands the user may run now."""
    po = service.get_purchase_order(connection, po_id, visible=principal.sites)
    return _po_page(request, connection, principal, po)


@pages.get("/purchase-orders/lines", dependencies=[READ_PO])
def purchase_order_lines(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The line grid alone: what the PO page polls while goods are being received."""
    po = service.get_purchase_order(connection, po_id, visible=principal.sites)
    return render(
        request,
        "purchase_order_lines.html",
        {
            "po": _po_view(po, principal),
            "live": po.status in service.RECEIVABLE,
            "poll": POLL_SECONDS,
            "status_labels": STATUS_LABELS,
        },
        principal=principal,
        headers={"ETag": f'"{po.version}"'},
    )


@pages.get("/purchase-orders/print", dependencies=[READ_PO])
def purchase_order_print(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The PO on an A4 page (the browser prints it, or saves it as PDF)."""
    po = service.get_purchase_order(connection, po_id, visible=principal.sites)
    return render(
        request,
        "purchase_order_print.html",
        {
            "po": _po_view(po, principal),
            "status_labels": STATUS_LABELS,
            "printed_at": datetime.now(UTC),
        },
        principal=principal,
    )


def _run_po_command(
    verb: str, run: Callable[[ConnDep, service.PoCommand, Settings], service.PurchaseOrder]
) -> None:
    async def command(
        request: Request,
        *,
        po_id: IdQuery,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
        settings: SettingsDep,
    ) -> Response:
        raw = await request.body()
        posted = await request.form()
        order = service.PoCommand(
            po_id=po_id,
            actor=principal.name,
            visible=principal.sites,
            if_match=_if_match(posted),
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
            reason=_posted(posted, "reason", 1000) or None,
        )
        try:
            run(connection, order, settings)
        except IdempotentReplay:
            pass
        except _REFUSALS as refused:
            po = service.get_purchase_order(connection, po_id, visible=principal.sites)
            return _po_page(
                request,
                connection,
                principal,
                po,
                refusal=str(refused),
                status_code=_status_of(refused),
            )
        return redirect(request, url(f"{POS}/view", id=po_id))

    command.__name__ = f"{verb}_purchase_order_page"
    pages.post(f"/purchase-orders/{verb}", dependencies=[Requires(f"purchase_order.{verb}")])(
        command
    )


_run_po_command(
    "approve",
    lambda c, o, s: service.approve_purchase_order(c, o, segregation=s.purchase_order_sod),
)
_run_po_command("send", lambda c, o, _s: service.send_purchase_order(c, o))
_run_po_command("cancel", lambda c, o, _s: service.cancel_purchase_order(c, o))
_run_po_command("close", lambda c, o, _s: service.close_purchase_order(c, o))


# --- the PO form (a draft) --------------------------------------------------------------

_LINE_FIELDS: Final = (
    "item_code",
    "qty",
    "uom",
    "unit_price",
    "tax_rate",
    "expected_date",
    "over_tolerance",
    "under_tolerance",
)
_MONEY_FIELDS: Final = ("unit_price", "tax_rate")


def _line_form(line: service.PoLine | None, financial: bool) -> dict[str, str]:
    if line is None:
        return dict.fromkeys(_LINE_FIELDS, "")
    row = {
        "item_code": line.item_code,
        "qty": format(line.qty, "f"),
        "uom": line.uom,
        "unit_price": "" if line.unit_price is None else format(line.unit_price, "f"),
        "tax_rate": "" if line.tax_rate is None else format(line.tax_rate, "f"),
        "expected_date": "" if line.expected_date is None else line.expected_date.isoformat(),
        "over_tolerance": format(line.over_tolerance, "f"),
        "under_tolerance": format(line.under_tolerance, "f"),
    }
    if not financial:
        for name in _MONEY_FIELDS:
            row.pop(name)
    return row


def _po_form(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    po_id: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "purchase_order_form.html",
        {
            "form": form,
            "errors": errors,
            "po_id": po_id,
            "financial": principal.financial,
            "suppliers": _suppliers(connection),
            "sites": _sites(connection, principal),
            "action": f"{POS}/new" if po_id is None else url(f"{POS}/edit", id=po_id),
            "cancel": POS if po_id is None else url(f"{POS}/view", id=po_id),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/purchase-orders/new", dependencies=[CREATE_PO])
def new_purchase_order_page(
    request: Request, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    form: dict[str, Any] = {
        "supplier": "",
        "site_id": "",
        "note": "",
        "lines": [_line_form(None, principal.financial) for _ in range(BLANK_LINES)],
        "idempotency_key": str(uuid.uuid4()),
        "version": "",
    }
    return _po_form(request, connection, principal, form, {}, po_id=None)


@pages.get("/purchase-orders/edit", dependencies=[CREATE_PO])
def edit_purchase_order_page(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    po = service.get_purchase_order(connection, po_id, visible=principal.sites)
    form: dict[str, Any] = {
        "supplier": po.supplier,
        "site_id": po.site_id,
        "note": po.note,
        "lines": [_line_form(line, principal.financial) for line in po.lines]
        + [_line_form(None, principal.financial) for _ in range(BLANK_LINES)],
        "idempotency_key": "",
        "version": str(po.version),
    }
    return _po_form(request, connection, principal, form, {}, po_id=po_id)


@pages.post("/purchase-orders/new", dependencies=[CREATE_PO])
async def create_purchase_order_form(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save_po(request, connection, principal, audit, po_id=None)


@pages.post("/purchase-orders/edit", dependencies=[CREATE_PO])
async def update_purchase_order_form(
    request: Request, po_id: IdQuery, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save_po(request, connection, principal, audit, po_id=po_id)


async def _save_po(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    audit: AuditContext,
    *,
    po_id: str | None,
) -> Response:
    """Check the whole form with the API's ``PurchaseOrderIn``, then one service call: a
    refused form saves nothing. Rows left empty are not lines."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    fields = (
        _LINE_FIELDS
        if principal.financial
        else tuple(f for f in _LINE_FIELDS if f not in _MONEY_FIELDS)
    )
    rows = posted_rows(posted, fields)
    form: dict[str, Any] = {
        "supplier": _posted(posted, "supplier"),
        "site_id": _posted(posted, "site_id"),
        "note": _posted(posted, "note", 1000),
        "lines": rows,
        "idempotency_key": _posted(posted, "idempotency_key"),
        "version": _posted(posted, "version", 20),
    }
    used = [(i, row) for i, row in enumerate(rows) if any(row.values())]
    body = {
        "supplier": form["supplier"],
        "site_id": form["site_id"],
        "note": form["note"],
        "lines": sent_lines(used, "item_code", "qty"),
    }
    checked, found = validate(PurchaseOrderIn, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    if not used:
        errors["lines"] = _("Enter at least one line.")
    if not errors:
        lines = [service.PoLineInput(**line.model_dump()) for line in checked.lines]
        try:
            if po_id is None:
                saved = service.create_purchase_order(
                    connection,
                    supplier=checked.supplier,
                    site_id=checked.site_id,
                    note=checked.note,
                    lines=lines,
                    created_by=principal.name,
                    visible=principal.sites,
                    audit=audit,
                    claim=form_claim(request, principal, form["idempotency_key"], raw),
                )
            else:
                saved = service.update_purchase_order(
                    connection,
                    po_id=po_id,
                    supplier=checked.supplier,
                    site_id=checked.site_id,
                    note=checked.note,
                    lines=lines,
                    visible=principal.sites,
                    if_match=_if_match(posted),
                    audit=audit,
                )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{POS}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = refusal_key(refused, used, "supplier", "site_id")
            errors[key] = reason
        else:
            return redirect(request, url(f"{POS}/view", id=saved.po_id))
    return _po_form(request, connection, principal, form, errors, po_id=po_id, status_code=422)


def posted_rows(posted: Any, fields: tuple[str, ...]) -> list[dict[str, str]]:
    """A line grid as posted: ``line_<field>`` repeated once per row, read back row by row
    (at most ``MAX_LINES``; a short column reads as empty)."""
    columns = {
        name: [str(v).strip()[:200] for v in posted.getlist(f"line_{name}")] for name in fields
    }
    count = max((len(values) for values in columns.values()), default=0)
    return [
        {name: (columns[name][i] if i < len(columns[name]) else "") for name in fields}
        for i in range(min(count, service.MAX_LINES))
    ]


def sent_lines(used: list[tuple[int, dict[str, str]]], *required: str) -> list[dict[str, str]]:
    """The rows a form sends as lines: their filled fields, and the ``required`` ones even
    when empty (so the model names them next to their row)."""
    return [
        {name: value for name, value in row.items() if value or name in required}
        for _i, row in used
    ]


def refusal_key(
    refused: Exception, used: list[tuple[int, dict[str, str]]], *fields: str
) -> tuple[str, str]:
    """Where a service's refusal goes on a form: ``lines[i].qty: …`` next to its row's
    field, a header field it names next to that field, anything else over the form."""
    where, _sep, reason = str(refused).partition(": ")
    key = _row_key(where, used) if where.startswith("lines[") else where
    if key not in fields and not key.startswith("line-"):
        return "form", str(refused)
    return key, reason


def _row_key(key: str, used: list[tuple[int, dict[str, str]]]) -> str:
    """``lines.1.qty`` or ``lines[1].qty`` (the n-th line sent) → ``line-<row>-qty``, the
    row of the form it came from (empty rows are not sent)."""
    if not key.startswith("lines"):
        return key
    rest = key[len("lines") :].lstrip(".[")
    number, _sep, name = rest.replace("]", "").partition(".")
    if not number.isdigit() or int(number) >= len(used):
        return "lines"
    row = used[int(number)][0]
    return f"line-{row}-{name or 'item_code'}"


# --- requisitions -----------------------------------------------------------------------


@pages.get("/requisitions", dependencies=[READ_REQ])
def requisitions_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "",
    site: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> HTMLResponse:
    """Requisitions of the user's sites; approved ones can be ticked and made into POs."""
    chosen = status if status in service.ReqStatus.__members__.values() else ""
    site_text = "".join(c for c in site if c.isprintable()).strip()
    found, next_after = service.list_requisitions(
        connection,
        status=service.ReqStatus(chosen) if chosen else None,
        site_id=site_text or None,
        visible=principal.sites,
        after=after or None,
        limit=PAGE,
    )
    return render(
        request,
        "requisitions.html",
        {
            "requisitions": found,
            "filters": {"status": chosen, "site": site_text},
            "statuses": [s.value for s in service.ReqStatus],
            "sites": _sites(connection, principal),
            "can_convert": principal.can("purchase_order.create"),
            "key": str(uuid.uuid4()),
            "more": None
            if next_after is None
            else url(REQS, status=chosen, site=site_text, after=next_after),
            "status_labels": STATUS_LABELS,
            "url": url,
            "refusal": "",
        },
        principal=principal,
    )


def _req_page(
    request: Request,
    principal: Principal,
    req: service.Requisition,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    commands = [
        verb
        for verb, (action, states) in REQ_VERBS.items()
        if req.status in states and principal.can(action)
    ]
    return render(
        request,
        "requisition.html",
        {
            "req": req,
            "commands": commands,
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{req.version}"'},
    )


@pages.get("/requisitions/view", dependencies=[READ_REQ])
def requisition_page(
    request: Request, req_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    req = service.get_requisition(connection, req_id, visible=principal.sites)
    return _req_page(request, principal, req)


def _run_req_command(verb: str, action: str) -> None:
    async def command(
        request: Request,
        *,
        req_id: IdQuery,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
        settings: SettingsDep,
    ) -> Response:
        raw = await request.body()
        posted = await request.form()
        order = service.ReqCommand(
            req_id=req_id,
            actor=principal.name,
            visible=principal.sites,
            if_match=_if_match(posted),
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
            reason=_posted(posted, "reason", 1000) or None,
        )
        try:
            service.move_requisition(connection, order, verb, segregation=settings.requisition_sod)
        except IdempotentReplay:
            pass
        except _REFUSALS as refused:
            req = service.get_requisition(connection, req_id, visible=principal.sites)
            return _req_page(
                request, principal, req, refusal=str(refused), status_code=_status_of(refused)
            )
        return redirect(request, url(f"{REQS}/view", id=req_id))

    command.__name__ = f"{verb}_requisition_page"
    pages.post(f"/requisitions/{verb}", dependencies=[Requires(action)])(command)


for _verb, (_action, _states) in REQ_VERBS.items():
    _run_req_command(_verb, _action)


_REQ_FIELDS: Final = ("item_code", "qty", "uom", "supplier", "expected_date")


def _req_form(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "requisition_form.html",
        {
            "form": form,
            "errors": errors,
            "sites": options(request, _sites(connection, principal), "site_id"),
            "suppliers": options(request, _suppliers(connection), "code"),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/requisitions/new", dependencies=[CREATE_REQ])
def new_requisition_page(
    request: Request, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A requisition (请购单) of a store or warehouse: what it needs, optionally from whom."""
    form: dict[str, Any] = {
        "site_id": "",
        "note": "",
        "lines": [dict.fromkeys(_REQ_FIELDS, "") for _ in range(BLANK_LINES + 2)],
        "idempotency_key": str(uuid.uuid4()),
    }
    return _req_form(request, connection, principal, form, {})


@pages.post("/requisitions/new", dependencies=[CREATE_REQ])
async def create_requisition_form(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    """Checked whole with the API's ``RequisitionIn``; one service call, as a draft."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    rows = posted_rows(posted, _REQ_FIELDS)
    form: dict[str, Any] = {
        "site_id": _posted(posted, "site_id"),
        "note": _posted(posted, "note", 1000),
        "lines": rows,
        "idempotency_key": _posted(posted, "idempotency_key"),
    }
    used = [(i, row) for i, row in enumerate(rows) if any(row.values())]
    body = {
        "site_id": form["site_id"],
        "note": form["note"],
        "lines": sent_lines(used, "item_code", "qty"),
    }
    checked, found = validate(RequisitionIn, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    if not used:
        errors["lines"] = _("Enter at least one line.")
    if not errors:
        try:
            made = service.create_requisition(
                connection,
                site_id=checked.site_id,
                note=checked.note,
                lines=[service.ReqLineInput(**line.model_dump()) for line in checked.lines],
                created_by=principal.name,
                visible=principal.sites,
                audit=audit,
                claim=form_claim(request, principal, form["idempotency_key"], raw),
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{REQS}/view", id=replay.resource_id))
        except _REFUSALS as refused:
            key, reason = refusal_key(refused, used, "site_id")
            errors[key] = reason
        else:
            return redirect(request, url(f"{REQS}/view", id=made.req_id))
    return _req_form(request, connection, principal, form, errors, status_code=422)


@pages.post("/requisitions/convert", dependencies=[CREATE_PO])
async def convert_requisitions_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    """The ticked approved requisitions become draft POs (one per supplier and site); the
    first of them opens, the others are in the PO list as drafts."""
    raw = await request.body()
    posted = await request.form()
    chosen = [str(value)[:64] for value in posted.getlist("req")][:100]
    try:
        made = service.convert_requisitions(
            connection,
            req_ids=chosen,
            created_by=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        )
        first = made[0].po_id if made else None
    except IdempotentReplay as replay:
        first = replay.resource_id.split(",")[0] or None
    except _REFUSALS as refused:
        _ = gettext_for(i18n.language_of(request))
        found, _after = service.list_requisitions(
            connection,
            status=service.ReqStatus.APPROVED,
            site_id=None,
            visible=principal.sites,
            after=None,
            limit=PAGE,
        )
        return render(
            request,
            "requisitions.html",
            {
                "requisitions": found,
                "filters": {"status": "approved", "site": ""},
                "statuses": [s.value for s in service.ReqStatus],
                "sites": _sites(connection, principal),
                "can_convert": True,
                "key": str(uuid.uuid4()),
                "more": None,
                "status_labels": STATUS_LABELS,
                "url": url,
                "refusal": str(refused) if chosen else _("Tick at least one requisition."),
            },
            principal=principal,
            status_code=_status_of(refused),
        )
    return redirect(request, url(f"{POS}/view", id=first) if first else POS)


# --- exceptions -------------------------------------------------------------------------


@pages.get("/purchase-exceptions", dependencies=[READ_PO])
def exceptions_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "open",
) -> HTMLResponse:
    """What receiving raised for a person: over-receipts, receipts that fit no open line."""
    chosen = status if status in ("open", "resolved") else ""
    found, _after = service.list_exceptions(
        connection,
        status=chosen or None,
        site_id=None,
        po_id=None,
        visible=principal.sites,
        after=None,
        limit=service.MAX_PAGE,
    )
    return render(
        request,
        "purchase_exceptions.html",
        {
            "exceptions": found,
            "status": chosen,
            "can_resolve": principal.can("purchase_exception.resolve"),
            "key": str(uuid.uuid4()),
            "status_labels": STATUS_LABELS,
            "url": url,
            "refusal": "",
        },
        principal=principal,
    )


@pages.post("/purchase-exceptions/resolve", dependencies=[RESOLVE])
async def resolve_exception_page(
    request: Request,
    exception_id: Annotated[int, Query(alias="id", ge=1, le=2**63 - 1)],
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    raw = await request.body()
    posted = await request.form()
    resolution = _posted(posted, "resolution", 1000)
    _ = gettext_for(i18n.language_of(request))
    if not resolution:
        raise InvalidError(_("Say what was decided."))
    with contextlib.suppress(IdempotentReplay):
        service.resolve_exception(
            connection,
            exception_id=exception_id,
            resolution=resolution,
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        )
    return redirect(request, EXCEPTIONS)
