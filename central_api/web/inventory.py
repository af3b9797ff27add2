"""The console's inventory pages: other receipts and issues, write-offs, transfers, counts.

Thin over ``services/inventory.py``, ``services/transfers.py`` and ``services/counts.py``
with the API routes' own actions (``other_movement.read``, ``write_off.approve``,
``transfer.ship``, ``stock_count.count``...), the user's sites as ``visible`` (another
site's document is a 404, asking for another site a 403) and the request's audit
context, as the purchasing and receiving pages are (:mod:`central_api.web.purchasing`,
:mod:`central_api.web.receiving`). Every form and command carries an ``Idempotency-Key``
made when the page was drawn, and a command the document's version as ``If-Match`` (a
stale page is refused with 412 and says so). A refusal comes back as the same page with
the service's reason over it and the refusal's status.

Money: a write-off's value and each line's cost are dropped here, before the template
sees them, for a role without the financial field group (``_stock_view``); a clerk
records write-offs without ever receiving a figure.

Counting is blind. The counter's pages (``/console/count``, action
``stock_count.count``) are drawn from the *sheet* fields of a session only (where, what,
lot, unit, what was counted, whether to count again: ``_sheet_view``), never the
expected or system quantity or the variance, which only the review page
(``/console/stock-counts/view``, ``stock_count.read``) shows. The entry page is made for a
phone with a keyboard-wedge scanner: the location field has the focus, a scan ending in
Enter (or Tab) moves on to the item, then the quantity, and Enter there saves; the page
comes back with the location kept and the item field focused for the next scan.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection, select

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import projections
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import NotFoundError
from central_api.models.items import items as items_table
from central_api.schemas.inventory import (
    CountEntryIn,
    CountIn,
    MoveIn,
    StockDocumentIn,
    TransferIn,
)
from central_api.services import counts, transfers
from central_api.services import inventory as stock_docs
from central_api.services.audit import AuditContext
from central_api.services.documents import DocCommand
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotentReplay
from central_api.services.projections import Projections
from central_api.services.reference import list_entries
from central_api.services.sites import list_locations, list_sites
from central_api.web import i18n
from central_api.web.forms import validate
from central_api.web.purchasing import (
    _REFUSALS,
    PAGE,
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
    sent_lines,
    site_filter,
    url,
)
from central_api.web.receiving import command_route
from central_api.web.render import (
    CONSOLE_ROOT,
    N_,
    NAVIGATION,
    REPORT,
    NavEntry,
    environment,
    gettext_for,
    render,
)
from central_api.web.routes import form_claim, redirect
from central_api.web.search import item_for_scan
from jxc.contract import Code

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

OTHER_RECEIPTS: Final = f"{CONSOLE_ROOT}/other-receipts"
OTHER_ISSUES: Final = f"{CONSOLE_ROOT}/other-issues"
WRITE_OFFS: Final = f"{CONSOLE_ROOT}/write-offs"
TRANSFERS: Final = f"{CONSOLE_ROOT}/transfers"
"""Transfer orders (调拨); ``/console/transfer`` (singular) is the import/export page."""
COUNTS: Final = f"{CONSOLE_ROOT}/stock-counts"
COUNT: Final = f"{CONSOLE_ROOT}/count"
"""The counter's pages: the open sessions, and the phone entry page of one."""

BLANK_LINES: Final = 4
"""Empty line rows a new document's form offers (no script needed)."""

STOCK: Final = N_("Stock control")

STATUS_LABELS: Final[dict[str, str]] = {
    "posted": N_("Posted"),
    "pending": N_("Waiting for approval"),
    "rejected": N_("Rejected"),
    "draft": N_("Draft"),
    "approved": N_("Approved"),
    "shipped": N_("In transit"),
    "received": N_("Received"),
    "cancelled": N_("Cancelled"),
    "counting": N_("Counting"),
    "review": N_("Under review"),
    "open": N_("Open"),
    "resolved": N_("Resolved"),
    "short": N_("Short"),
    "over": N_("Over"),
    "wrong_lot": N_("Wrong lot"),
}
"""The msgid of each status and exception kind these pages show."""

VERB_LABELS: Final[dict[str, str]] = {
    "approve": N_("Approve"),
    "reject": N_("Reject"),
    "cancel": N_("Cancel"),
    "ship": N_("Ship"),
    "receive": N_("Receive"),
}


# --- the three single-step documents: one frame ---------------------------------------------


class StockKind:
    """What differs between other receipts, other issues and write-offs on the console."""

    def __init__(
        self,
        kind: stock_docs.StockDocKind,
        base: str,
        action: str,
        *,
        title: str,
        one: str,
        new: str,
        none: str,
    ) -> None:
        self.kind = kind
        self.base = base
        self.action = action
        self.title = title
        self.one = one
        self.new = new
        self.none = none

    @property
    def path(self) -> str:
        return self.base.removeprefix(CONSOLE_ROOT)


KINDS: Final = (
    StockKind(
        stock_docs.StockDocKind.OTHER_RECEIPT,
        OTHER_RECEIPTS,
        "other_movement",
        title=N_("Other receipts"),
        one=N_("Other receipt"),
        new=N_("New other receipt"),
        none=N_("No other receipt matches."),
    ),
    StockKind(
        stock_docs.StockDocKind.OTHER_ISSUE,
        OTHER_ISSUES,
        "other_movement",
        title=N_("Other issues"),
        one=N_("Other issue"),
        new=N_("New other issue"),
        none=N_("No other issue matches."),
    ),
    StockKind(
        stock_docs.StockDocKind.WRITE_OFF,
        WRITE_OFFS,
        "write_off",
        title=N_("Write-offs"),
        one=N_("Write-off"),
        new=N_("New write-off"),
        none=N_("No write-off matches."),
    ),
)
_STOCK_FIELDS: Final = ("item_code", "qty", "uom", "location", "lot", "expiry")


def _stock_view(document: stock_docs.StockDocument, principal: Principal) -> dict[str, Any]:
    """A document as a page may show it: no value, no cost for a role without the group."""
    view = asdict(document)
    view["status"] = document.status.value
    if not principal.financial:
        view.pop("value", None)
        for line in view["lines"]:
            line.pop("unit_cost", None)
    return view


def _reasons(request: Request, connection: Connection, kind: str) -> list[tuple[str, str]]:
    """The active reason codes meant for ``kind`` (the service checks the same)."""
    named = environment(i18n.language_of(request).locale).filters["named"]
    return [
        (entry.code, f"{entry.code} {named(entry)}")
        for entry in list_entries(connection, "reason_codes", active=True)
        if kind in entry.attrs.get("applies_to", [])
    ]


def _stock_routes(spec: StockKind) -> None:
    read, create = Requires(f"{spec.action}.read"), Requires(f"{spec.action}.create")
    slug = spec.kind.value

    def listing(
        request: Request,
        connection: ConnDep,
        principal: PrincipalDep,
        *,
        site: Annotated[str, Query(max_length=64)] = "",
        status: Annotated[str, Query(max_length=20)] = "",
        after: Annotated[Code | None, Query()] = None,
    ) -> HTMLResponse:
        return document_list(
            request,
            connection,
            principal,
            stock_docs.list_documents,
            {"kind": spec.kind},
            after=after,
            site=site,
            status=(status, stock_docs.StockDocStatus),
            template="inventory_documents.html",
            key="documents",
            base=spec.base,
            view=lambda each: _stock_view(each, principal),
            spec=spec,
            statuses=[s.value for s in stock_docs.StockDocStatus]
            if spec.kind is stock_docs.StockDocKind.WRITE_OFF
            else [],
            status_labels=STATUS_LABELS,
        )

    def page(
        request: Request,
        connection: Connection,
        principal: Principal,
        doc_id: str,
        *,
        refusal: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        document = stock_docs.get_document(connection, spec.kind, doc_id, visible=principal.sites)
        decide = (
            spec.kind is stock_docs.StockDocKind.WRITE_OFF
            and document.status is stock_docs.StockDocStatus.PENDING
            and principal.can("write_off.approve")
        )
        return render(
            request,
            "inventory_document.html",
            {
                "spec": spec,
                "doc": _stock_view(document, principal),
                "commands": ["approve", "reject"] if decide else [],
                "key": str(uuid.uuid4()),
                "refusal": refusal,
                "status_labels": STATUS_LABELS,
                "verb_labels": VERB_LABELS,
                "url": url,
            },
            principal=principal,
            status_code=status_code,
            headers={"ETag": f'"{document.version}"'},
        )

    def view(
        request: Request, doc_id: IdQuery, connection: ConnDep, principal: PrincipalDep
    ) -> HTMLResponse:
        return page(request, connection, principal, doc_id)

    def form_page(
        request: Request,
        connection: Connection,
        principal: Principal,
        form: dict[str, Any],
        errors: dict[str, str],
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        return render(
            request,
            "inventory_document_form.html",
            {
                "spec": spec,
                "form": form,
                "errors": errors,
                "sites": options(request, _sites(connection, principal), "site_id"),
                "reasons": _reasons(request, connection, slug),
                "receipt": spec.kind is stock_docs.StockDocKind.OTHER_RECEIPT,
            },
            principal=principal,
            status_code=status_code,
        )

    def new(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
        form: dict[str, Any] = {
            "site_id": "",
            "reason_code": "",
            "note": "",
            "lines": [dict.fromkeys(_STOCK_FIELDS, "") for _ in range(BLANK_LINES)],
            "idempotency_key": str(uuid.uuid4()),
        }
        return form_page(request, connection, principal, form, {})

    async def create_form(
        request: Request,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
        settings: SettingsDep,
    ) -> Response:
        raw = await request.body()
        posted = await request.form()
        _ = gettext_for(i18n.language_of(request))
        fields = (
            _STOCK_FIELDS
            if spec.kind is stock_docs.StockDocKind.OTHER_RECEIPT
            else tuple(f for f in _STOCK_FIELDS if f != "expiry")
        )
        rows = posted_rows(posted, fields)
        form: dict[str, Any] = {
            "site_id": _posted(posted, "site_id"),
            "reason_code": _posted(posted, "reason_code", 64),
            "note": _posted(posted, "note", 1000),
            "lines": rows,
            "idempotency_key": _posted(posted, "idempotency_key"),
        }
        used = [(i, row) for i, row in enumerate(rows) if any(row.values())]
        body = {
            "site_id": form["site_id"],
            "reason_code": form["reason_code"],
            "note": form["note"],
            "lines": sent_lines(used, "item_code", "qty", "location"),
        }
        checked, found = validate(StockDocumentIn, body, _)
        errors = {_row_key(key, used): message for key, message in found.items()}
        if not used:
            errors["lines"] = _("Enter at least one line.")
        if not errors:
            new_doc = stock_docs.NewStockDocument(
                kind=spec.kind,
                site_id=checked.site_id,
                reason_code=checked.reason_code,
                note=checked.note,
                lines=[stock_docs.StockLineInput(**line.model_dump()) for line in checked.lines],
            )
            try:
                made = stock_docs.create_document(
                    connection,
                    new_doc,
                    actor=principal.name,
                    visible=principal.sites,
                    audit=audit,
                    projections=getattr(request.app.state, "projections", None),
                    approval_value=settings.write_off_approval_value,
                    claim=form_claim(request, principal, form["idempotency_key"], raw),
                )
            except IdempotentReplay as replay:
                return redirect(request, url(f"{spec.base}/view", id=replay.resource_id))
            except (*_REFUSALS, NotFoundError) as refused:
                key, reason = refusal_key(refused, used, "site_id", "reason_code")
                errors[_shown(key, "location")] = reason
            else:
                return redirect(request, url(f"{spec.base}/view", id=made.doc_id))
        return form_page(request, connection, principal, form, errors, status_code=422)

    for function, name in (
        (listing, f"{slug}s_page"),
        (view, f"{slug}_page"),
        (new, f"new_{slug}_page"),
        (create_form, f"create_{slug}_form"),
    ):
        function.__name__ = name
    pages.get(spec.path, dependencies=[read])(listing)
    pages.get(f"{spec.path}/view", dependencies=[read])(view)
    pages.get(f"{spec.path}/new", dependencies=[create])(new)
    pages.post(f"{spec.path}/new", dependencies=[create])(create_form)

    if spec.kind is stock_docs.StockDocKind.WRITE_OFF:
        for verb in ("approve", "reject"):
            _command_route(
                spec.base,
                verb,
                "write_off.approve",
                run=_decide_write_off(verb),
                page=page,
            )


def _shown(key: str, fallback: str) -> str:
    """A refusal about a line as a whole (``line-2-item_code`` from ``lines[2]: ...``) is
    shown next to that line's ``fallback`` field when the grid has no item column error."""
    return key if not key.endswith("-item_code") else key.removesuffix("item_code") + fallback


RunFn = Callable[[Connection, DocCommand, Any, Projections | None], object]
"""A console command's booking: ``command_route(..., projected=True)`` hands it the app's
projections, so valuation and order progress move in the command's transaction."""


def _command_route(base: str, verb: str, action: str, *, run: RunFn, page: Any) -> None:
    command_route(pages, base, verb, action, run=run, page=page, projected=True)


def _decide_write_off(verb: str) -> RunFn:
    def run(
        connection: Connection, order: DocCommand, _posted: Any, projected: Projections | None
    ) -> object:
        return stock_docs.decide_write_off(connection, order, verb, projections=projected)

    return run


for _spec in KINDS:
    _stock_routes(_spec)


# --- transfers -------------------------------------------------------------------------------

TRANSFER_VERBS: Final[dict[str, frozenset[transfers.TransferStatus]]] = {
    "approve": frozenset({transfers.TransferStatus.DRAFT}),
    "cancel": frozenset({transfers.TransferStatus.DRAFT, transfers.TransferStatus.APPROVED}),
}
"""The buttons a transfer page offers (ship and receive are forms of their own)."""
_TRANSFER_FIELDS: Final = ("item_code", "qty", "uom")
_PICK_FIELDS: Final = ("line_no", "location", "lot", "qty")


def _transfer_view(transfer: transfers.Transfer) -> dict[str, Any]:
    """A transfer with each line's shipped, received and in-transit totals (properties)."""
    view = asdict(transfer)
    view["status"] = transfer.status.value
    for line, data in zip(transfer.lines, view["lines"], strict=True):
        data["shipped_qty"] = line.shipped_qty
        data["received_qty"] = line.received_qty
        data["in_transit"] = line.in_transit
        for lot, lot_data in zip(line.lots, data["lots"], strict=True):
            lot_data["in_transit"] = lot.in_transit
    view["in_transit"] = [
        (line.item_code, line.in_transit, line.base_uom)
        for line in transfer.lines
        if line.in_transit
    ]
    return view


@pages.get("/transfers", dependencies=[Requires("transfer.read")])
def transfers_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    site: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> HTMLResponse:
    """Transfers from or to the user's sites, with what is in transit on each."""
    return document_list(
        request,
        connection,
        principal,
        transfers.list_transfers,
        {},
        after=after,
        site=site,
        status=(status, transfers.TransferStatus),
        template="transfer_orders.html",
        key="transfers",
        base=TRANSFERS,
        view=_transfer_view,
        status_labels=STATUS_LABELS,
    )


def _location_options(
    request: Request, connection: Connection, site_id: str
) -> list[tuple[str, str]]:
    found, _after = list_locations(connection, site_id=site_id, after=None, limit=1000)
    return options(request, [loc for loc in found if loc.active], "code")


def _ship_rows(transfer: transfers.Transfer) -> list[dict[str, str]]:
    """Per line: a row with what is still to ship, and a blank one for a second lot."""
    rows = []
    for line in transfer.lines:
        left = line.base_qty - line.shipped_qty
        label = f"#{line.line_no} {line.item_code} · {format(line.base_qty, 'f')} {line.base_uom}"
        rows.append(
            {"line_no": str(line.line_no), "label": label, "qty": format(max(left, 0), "f")}
        )
        rows.append({"line_no": str(line.line_no), "label": label + " +"})
    return rows


def _receive_rows(transfer: transfers.Transfer) -> list[dict[str, str]]:
    """Per lot in transit: a row with its lot and quantity; a blank row per line (another
    lot arrived, or more than left)."""
    rows = []
    for line in transfer.lines:
        label = f"#{line.line_no} {line.item_code} ({line.base_uom})"
        for lot in line.lots:
            if lot.in_transit > 0:
                rows.append(
                    {
                        "line_no": str(line.line_no),
                        "label": label,
                        "lot": lot.lot or "",
                        "qty": format(lot.in_transit, "f"),
                    }
                )
        rows.append({"line_no": str(line.line_no), "label": label + " +"})
    return rows


def _transfer_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    transfer_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
    move: tuple[str, list[dict[str, str]], dict[str, str]] | None = None,
) -> HTMLResponse:
    """The transfer, its buttons, the ship or receive form the state and the user's site
    allow (``move``: a form sent back with its rows and errors), and the differences on
    arrival with both quantities."""
    transfer = transfers.get_transfer(connection, transfer_id, visible=principal.sites)
    status = transfer.status
    commands = [
        verb
        for verb, states in TRANSFER_VERBS.items()
        if status in states and principal.can(f"transfer.{verb}")
    ]
    verb, rows, errors = move or ("", [], {})
    if not verb:
        if (
            status is transfers.TransferStatus.APPROVED
            and principal.can("transfer.ship")
            and principal.sees_site(transfer.from_site)
        ):
            verb, rows = "ship", _ship_rows(transfer)
        elif (
            status is transfers.TransferStatus.SHIPPED
            and principal.can("transfer.receive")
            and principal.sees_site(transfer.to_site)
        ):
            verb, rows = "receive", _receive_rows(transfer)
    site = transfer.from_site if verb == "ship" else transfer.to_site
    exceptions = transfers.list_exceptions(
        connection, transfer_id=transfer_id, status=None, site_id=None, visible=principal.sites
    )
    return render(
        request,
        "transfer_order.html",
        {
            "transfer": _transfer_view(transfer),
            "commands": commands,
            "move": verb,
            "rows": rows,
            "errors": errors,
            "locations": [("", "—"), *_location_options(request, connection, site)] if verb else [],
            "exceptions": exceptions,
            "may_resolve": principal.can("transfer_exception.resolve"),
            "can_edit": status is transfers.TransferStatus.DRAFT
            and principal.can("transfer.create")
            and principal.sees_site(transfer.from_site),
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{transfer.version}"'},
    )


@pages.get("/transfers/view", dependencies=[Requires("transfer.read")])
def transfer_page(
    request: Request, transfer_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A transfer order: lines ordered, shipped, received and in transit, lot by lot."""
    return _transfer_page(request, connection, principal, transfer_id)


def _move_transfer(verb: str) -> RunFn:
    def run(
        connection: Connection, order: DocCommand, _posted: Any, projected: Projections | None
    ) -> object:
        return transfers.move_transfer(
            connection, transfers.MoveCommand(command=order), verb, projections=projected
        )

    return run


for _verb in TRANSFER_VERBS:
    _command_route(
        TRANSFERS,
        _verb,
        f"transfer.{_verb}",
        run=_move_transfer(_verb),
        page=_transfer_page,
    )


def _pick_route(verb: str) -> None:
    async def command(
        request: Request,
        *,
        transfer_id: IdQuery,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
    ) -> Response:
        """What left (ship) or arrived (receive), row by row: the rows with a quantity,
        checked whole with the API's ``MoveIn``, booked in one service call."""
        raw = await request.body()
        posted = await request.form()
        _ = gettext_for(i18n.language_of(request))
        rows = posted_rows(posted, (*_PICK_FIELDS, "label"))
        used = [(i, row) for i, row in enumerate(rows) if row["qty"]]
        body = {"lines": sent_lines([(i, _without_label(row)) for i, row in used], "location")}
        checked, found = validate(MoveIn, body, _)
        errors = {_row_key(key, used): message for key, message in found.items()}
        if not used:
            errors["lines"] = _("Enter the quantity on at least one row.")
        if not errors:
            order = transfers.MoveCommand(
                command=DocCommand(
                    doc_id=transfer_id,
                    actor=principal.name,
                    visible=principal.sites,
                    if_match=_if_match(posted),
                    audit=audit,
                    claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
                ),
                picks=[
                    transfers.Pick(
                        line_no=pick.line_no, location=pick.location, lot=pick.lot, qty=pick.qty
                    )
                    for pick in checked.lines
                ],
            )
            try:
                transfers.move_transfer(connection, order, verb, projections=projections(request))
            except IdempotentReplay:
                return redirect(request, url(f"{TRANSFERS}/view", id=transfer_id))
            except _REFUSALS as refused:
                key, reason = refusal_key(refused, used)
                if key == "form":
                    return _transfer_page(
                        request,
                        connection,
                        principal,
                        transfer_id,
                        refusal=str(refused),
                        status_code=_status_of(refused),
                        move=(verb, rows, {}),
                    )
                errors[_shown(key, "qty")] = reason
            else:
                return redirect(request, url(f"{TRANSFERS}/view", id=transfer_id))
        return _transfer_page(
            request, connection, principal, transfer_id, status_code=422, move=(verb, rows, errors)
        )

    command.__name__ = f"{verb}_transfer_page"
    pages.post(f"/transfers/{verb}", dependencies=[Requires(f"transfer.{verb}")])(command)


def _without_label(row: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in row.items() if name != "label"}


for _verb in ("ship", "receive"):
    _pick_route(_verb)


@pages.post("/transfers/resolve", dependencies=[Requires("transfer_exception.resolve")])
async def resolve_transfer_exception_page(
    request: Request,
    exception_id: Annotated[int, Query(alias="id", ge=1, le=2**31 - 1)],
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    """Close a difference on arrival with what was found out; a short one may be written
    off as lost (out of transit)."""
    raw = await request.body()
    posted = await request.form()
    found = transfers.get_exception(connection, exception_id, visible=principal.sites)
    resolution = _posted(posted, "resolution", 1000)
    if not resolution:
        return _transfer_page(
            request,
            connection,
            principal,
            found.transfer_id,
            refusal=gettext_for(i18n.language_of(request))("Say what was decided."),
            status_code=422,
        )
    try:
        with contextlib.suppress(IdempotentReplay):
            transfers.resolve_exception(
                connection,
                exception_id,
                resolution=resolution,
                lost=_posted(posted, "lost", 10) in ("on", "true", "1"),
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
            )
    except _REFUSALS as refused:
        return _transfer_page(
            request,
            connection,
            principal,
            found.transfer_id,
            refusal=str(refused),
            status_code=_status_of(refused),
        )
    return redirect(request, url(f"{TRANSFERS}/view", id=found.transfer_id))


def _transfer_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    transfer_id: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The new-transfer form, or the edit form of draft ``transfer_id``."""
    return render(
        request,
        "transfer_order_form.html",
        {
            "form": form,
            "errors": errors,
            "transfer_id": transfer_id,
            "action": f"{TRANSFERS}/new"
            if transfer_id is None
            else url(f"{TRANSFERS}/edit", id=transfer_id),
            "cancel": TRANSFERS
            if transfer_id is None
            else url(f"{TRANSFERS}/view", id=transfer_id),
            "from_sites": options(request, _sites(connection, principal), "site_id"),
            "to_sites": options(request, list_sites(connection, visible=None), "site_id"),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/transfers/new", dependencies=[Requires("transfer.create")])
def new_transfer_page(
    request: Request, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A transfer order (调拨单) from one of the user's sites to any other site."""
    form: dict[str, Any] = {
        "from_site": "",
        "to_site": "",
        "note": "",
        "lines": [dict.fromkeys(_TRANSFER_FIELDS, "") for _ in range(BLANK_LINES)],
        "idempotency_key": str(uuid.uuid4()),
        "version": "",
    }
    return _transfer_form(request, connection, principal, form, {})


@pages.get("/transfers/edit", dependencies=[Requires("transfer.create")])
def edit_transfer_page(
    request: Request, transfer_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A draft transfer's form, filled in, with the version it was read at (a save after
    someone else's is refused with 412) and spare rows for more lines."""
    transfer = transfers.get_transfer(connection, transfer_id, visible=principal.sites)
    form: dict[str, Any] = {
        "from_site": transfer.from_site,
        "to_site": transfer.to_site,
        "note": transfer.note,
        "lines": [
            {"item_code": line.item_code, "qty": format(line.qty, "f"), "uom": line.uom}
            for line in transfer.lines
        ]
        + [dict.fromkeys(_TRANSFER_FIELDS, "") for _ in range(BLANK_LINES)],
        "idempotency_key": str(uuid.uuid4()),
        "version": str(transfer.version),
    }
    return _transfer_form(request, connection, principal, form, {}, transfer_id=transfer_id)


@pages.post("/transfers/new", dependencies=[Requires("transfer.create")])
async def create_transfer_form(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save_transfer(request, connection, principal, audit, transfer_id=None)


@pages.post("/transfers/edit", dependencies=[Requires("transfer.create")])
async def update_transfer_form(
    request: Request,
    transfer_id: IdQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    return await _save_transfer(request, connection, principal, audit, transfer_id=transfer_id)


async def _save_transfer(
    request: Request,
    connection: Connection,
    principal: Principal,
    audit: AuditContext,
    *,
    transfer_id: str | None,
) -> Response:
    """Checked whole with the API's ``TransferIn``; one service call makes the draft or
    replaces it (with the page's version as ``If-Match``). Rows left empty are not lines."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    rows = posted_rows(posted, _TRANSFER_FIELDS)
    form: dict[str, Any] = {
        "from_site": _posted(posted, "from_site"),
        "to_site": _posted(posted, "to_site"),
        "note": _posted(posted, "note", 1000),
        "lines": rows,
        "idempotency_key": _posted(posted, "idempotency_key"),
        "version": _posted(posted, "version", 20),
    }
    used = [(i, row) for i, row in enumerate(rows) if any(row.values())]
    body = {
        "from_site": form["from_site"],
        "to_site": form["to_site"],
        "note": form["note"],
        "lines": sent_lines(used, "item_code", "qty"),
    }
    checked, found = validate(TransferIn, body, _)
    errors = {_row_key(key, used): message for key, message in found.items()}
    status_code = 422
    if not used:
        errors["lines"] = _("Enter at least one line.")
    if not errors:
        lines = [
            transfers.TransferLineInput(item_code=line.item_code, qty=line.qty, uom=line.uom)
            for line in checked.lines
        ]
        claim = form_claim(request, principal, form["idempotency_key"], raw)
        try:
            if transfer_id is None:
                saved = transfers.create_transfer(
                    connection,
                    from_site=checked.from_site,
                    to_site=checked.to_site,
                    note=checked.note,
                    lines=lines,
                    actor=principal.name,
                    visible=principal.sites,
                    audit=audit,
                    claim=claim,
                )
            else:
                saved = transfers.update_transfer(
                    connection,
                    transfer_id=transfer_id,
                    from_site=checked.from_site,
                    to_site=checked.to_site,
                    note=checked.note,
                    lines=lines,
                    visible=principal.sites,
                    if_match=_if_match(posted),
                    audit=audit,
                    claim=claim,
                )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{TRANSFERS}/view", id=replay.resource_id))
        except (*_REFUSALS, NotFoundError) as refused:
            key, reason = refusal_key(refused, used, "from_site", "to_site")
            errors[_shown(key, "qty")] = reason
            if key == "form":  # a stale page (412), a transfer no longer a draft (409)...
                status_code = _status_of(refused)
        else:
            return redirect(request, url(f"{TRANSFERS}/view", id=saved.transfer_id))
    return _transfer_form(
        request,
        connection,
        principal,
        form,
        errors,
        transfer_id=transfer_id,
        status_code=status_code,
    )


# --- stock counts: the reviewer's pages ---------------------------------------------------------

COUNT_VERBS: Final[dict[str, tuple[str, frozenset[counts.CountStatus]]]] = {
    "approve": ("stock_count.approve", frozenset({counts.CountStatus.REVIEW})),
    "cancel": (
        "stock_count.create",
        frozenset({counts.CountStatus.COUNTING, counts.CountStatus.REVIEW}),
    ),
}


def _progress(count: counts.StockCount) -> dict[str, int]:
    """How far counting is: lines, lines counted, lines to count again (no quantities)."""
    return {
        "lines": len(count.lines),
        "counted": sum(1 for line in count.lines if line.counted_qty is not None),
        "recount": sum(1 for line in count.lines if line.recount),
    }


@pages.get("/stock-counts", dependencies=[Requires("stock_count.read")])
def counts_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    site: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[str, Query(max_length=20)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> HTMLResponse:
    """Count sessions (盘点) of the user's sites, and each site's count accuracy (also
    value-weighted for a role with the financial group)."""
    site_text = site_filter(principal, site)
    return document_list(
        request,
        connection,
        principal,
        counts.list_counts,
        {},
        after=after,
        site=site_text,
        status=(status, counts.CountStatus),
        template="count_sessions.html",
        key="sessions",
        base=COUNTS,
        view=lambda each: (each, _progress(each)),
        accuracy=counts.accuracy(
            connection,
            site_id=site_text or None,
            visible=principal.sites,
            financial=principal.financial,
        ),
        status_labels=STATUS_LABELS,
    )


def _count_review(
    request: Request,
    connection: Connection,
    principal: Principal,
    count_id: str,
    *,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    count = counts.get_count(connection, count_id, visible=principal.sites)
    commands = [
        verb
        for verb, (action, states) in COUNT_VERBS.items()
        if count.status in states and principal.can(action)
    ]
    lines = [
        {**asdict(line), "variance": line.variance}
        for line in sorted(count.lines, key=lambda line: (line.variance or 0) == 0)
    ]
    return render(
        request,
        "count_review.html",
        {
            "count": count,
            "status": count.status.value,
            "lines": lines,
            "progress": _progress(count),
            "differ": sum(1 for line in count.lines if line.variance),
            "commands": commands,
            "may_count": principal.can("stock_count.count")
            and count.status is counts.CountStatus.COUNTING,
            "key": str(uuid.uuid4()),
            "refusal": refusal,
            "status_labels": STATUS_LABELS,
            "verb_labels": VERB_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{count.version}"'},
    )


@pages.get("/stock-counts/view", dependencies=[Requires("stock_count.read")])
def count_review_page(
    request: Request, count_id: IdQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The variance review: per line expected at the snapshot, on hand when counted,
    counted (and the first count when recounted), and the variance approval books."""
    return _count_review(request, connection, principal, count_id)


def _count_command(verb: str) -> RunFn:
    def run(
        connection: Connection, order: DocCommand, _posted: Any, projected: Projections | None
    ) -> object:
        return counts.count_command(
            connection, counts.CountCommand(command=order), verb, projections=projected
        )

    return run


for _verb, (_action, _states) in COUNT_VERBS.items():
    _command_route(COUNTS, _verb, _action, run=_count_command(_verb), page=_count_review)


def _count_form(
    request: Request,
    connection: Connection,
    principal: Principal,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "count_session_form.html",
        {
            "form": form,
            "errors": errors,
            "sites": options(request, _sites(connection, principal), "site_id"),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/stock-counts/new", dependencies=[Requires("stock_count.create")])
def new_count_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    """Open a session for a site, or for a range of its location codes."""
    form = {
        "site_id": "",
        "location_from": "",
        "location_to": "",
        "note": "",
        "idempotency_key": str(uuid.uuid4()),
    }
    return _count_form(request, connection, principal, form, {})


@pages.post("/stock-counts/new", dependencies=[Requires("stock_count.create")])
async def create_count_form(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    """Checked with the API's ``CountIn``; the snapshot is taken as the session opens."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form = {
        "site_id": _posted(posted, "site_id"),
        "location_from": _posted(posted, "location_from", 64),
        "location_to": _posted(posted, "location_to", 64),
        "note": _posted(posted, "note", 1000),
        "idempotency_key": _posted(posted, "idempotency_key"),
    }
    body = {
        "site_id": form["site_id"],
        "location_from": form["location_from"] or None,
        "location_to": form["location_to"] or None,
        "note": form["note"],
    }
    checked, errors = validate(CountIn, body, _)
    if not errors:
        try:
            made = counts.open_count(
                connection,
                site_id=checked.site_id,
                location_from=checked.location_from,
                location_to=checked.location_to,
                note=checked.note,
                actor=principal.name,
                visible=principal.sites,
                audit=audit,
                claim=form_claim(request, principal, form["idempotency_key"], raw),
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{COUNTS}/view", id=replay.resource_id))
        except (*_REFUSALS, NotFoundError) as refused:
            key, reason = refusal_key(refused, [], "site_id", "location_to")
            errors[key] = reason
        else:
            return redirect(request, url(f"{COUNTS}/view", id=made.count_id))
    return _count_form(request, connection, principal, form, errors, status_code=422)


# --- stock counts: the counter's pages (blind) --------------------------------------------------


def _sheet_view(count: counts.StockCount) -> list[dict[str, Any]]:
    """The counter's lines: the sheet's fields only, so the template cannot show what
    is expected (the API's ``SheetOut``: blind counting)."""
    return [
        {
            "line_no": line.line_no,
            "location": line.location,
            "item_code": line.item_code,
            "lot": line.lot,
            "uom": line.uom,
            "counted_qty": line.counted_qty,
            "recount": line.recount,
        }
        for line in sorted(count.lines, key=lambda line: (not line.recount, line.location))
    ]


SHOWN_TO_COUNT: Final = 50
"""Uncounted lines the entry page lists when no location is scanned yet."""


def _shown_lines(sheet: list[dict[str, Any]], location: str) -> list[dict[str, Any]]:
    """What the phone lists under the form: the lines to count again, and the lines of the
    location being counted (or, before a scan, the first lines not counted yet); a site of
    twenty thousand lines stays a short page."""
    again = [line for line in sheet if line["recount"]]
    if location:
        here = [line for line in sheet if line["location"] == location and not line["recount"]]
    else:
        here = [line for line in sheet if line["counted_qty"] is None][:SHOWN_TO_COUNT]
    return again + here


@pages.get("/count", dependencies=[Requires("stock_count.count")])
def count_sessions_page(
    request: Request, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The sessions open for counting at the user's sites: pick one to count."""
    found, _after = counts.list_counts(
        connection,
        site_id=None,
        status=counts.CountStatus.COUNTING,
        visible=principal.sites,
        after=None,
        limit=PAGE,
    )
    return render(
        request,
        "count_open.html",
        {"sessions": [(each, _progress(each)) for each in found], "url": url},
        principal=principal,
    )


def _entry_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    count_id: str,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    saved: int | None = None,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    count = counts.get_count(connection, count_id, visible=principal.sites)
    form = form or {
        "location": "",
        "item": "",
        "lot": "",
        "qty": "",
    }
    errors = errors or {}
    sheet = _sheet_view(count)
    shown = _shown_lines(sheet, form["location"])
    # The focus goes where the next scan belongs: the field in error, else the item when
    # the location is known (the counter is working through a shelf), else the location.
    focus = next(
        (name for name in ("location", "item", "lot", "qty") if name in errors),
        "item" if form["location"] else "location",
    )
    return render(
        request,
        "count_entry.html",
        {
            "count_id": count.count_id,
            "site_id": count.site_id,
            "range": (count.location_from, count.location_to),
            "status": count.status.value,
            "version": count.version,
            "lines": shown,
            "progress": _progress(count),
            "form": {**form, "idempotency_key": str(uuid.uuid4())},
            "errors": errors,
            "focus": focus,
            "saved": next((line for line in sheet if line["line_no"] == saved), None),
            "refusal": refusal,
            "counting": count.status is counts.CountStatus.COUNTING,
            "may_review": principal.can("stock_count.read"),
            "status_labels": STATUS_LABELS,
            "url": url,
        },
        principal=principal,
        status_code=status_code,
        headers={"ETag": f'"{count.version}"'},
    )


@pages.get("/count/entry", dependencies=[Requires("stock_count.count")])
def count_entry_page(
    request: Request,
    count_id: IdQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    location: Annotated[str, Query(max_length=64)] = "",
    saved: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> HTMLResponse:
    """Scan the location, scan the item, type the quantity: blind, one line at a time.
    ``saved``: the line the last entry counted, confirmed at the top of the page."""
    form = {"location": _clean(location), "item": "", "lot": "", "qty": ""}
    return _entry_page(request, connection, principal, count_id, form=form, saved=saved)


def _clean(text: str) -> str:
    """A scan as stored: no control characters (a wedge's GS, a stray line feed)."""
    return "".join(c for c in text if c.isprintable()).strip()


def _lot_in(scan: str) -> str | None:
    """The lot (AI 10) a GS1-128 scan carries, raw or printed with parentheses: a pharmacy
    box's one scan names the item and its lot, so the counter need not scan the lot."""
    # biip is imported here, not at the top: its GS1 prefix table takes 0.1 s to load,
    # which every central process (and every test worker) paid at start for a page
    # few requests reach (docs/performance.md, "Central's start").
    import biip  # noqa: PLC0415
    from biip import BiipException  # noqa: PLC0415
    from biip.gs1_messages import GS1Message  # noqa: PLC0415

    try:
        if scan.startswith("("):
            message: GS1Message | None = GS1Message.parse_hri(scan)
        else:
            message = biip.parse(scan).gs1_message
    except (BiipException, IndexError):  # not GS1: a plain barcode or an item code
        return None
    for element in message.element_strings if message is not None else ():
        if element.ai.ai == "10":
            return str(element.value)
    return None


def _item_of(connection: Connection, scan: str) -> str | None:
    """The item a scan names: one of its barcodes (any GS1 spelling), else its code."""
    found = item_for_scan(connection, scan)
    if found is not None:
        return found
    with read_snapshot(connection):  # a read that ends before the count's write begins
        exists = connection.execute(
            select(items_table.c.item_code).where(items_table.c.item_code == _clean(scan))
        ).scalar_one_or_none()
    return None if exists is None else str(exists)


@pages.post("/count/entry", dependencies=[Requires("stock_count.count")])
async def count_entry_form(
    request: Request,
    *,
    count_id: IdQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    settings: SettingsDep,
) -> Response:
    """One counted quantity, checked with the API's ``CountEntryIn``; the page comes back
    with the location kept, ready for the next item."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    scan = _posted(posted, "item", 200)  # as scanned: a GS1 scan may hold separators
    form = {
        "location": _clean(_posted(posted, "location", 64)),
        "item": _clean(scan),
        "lot": _clean(_posted(posted, "lot", 64)) or _lot_in(scan) or "",
        "qty": _posted(posted, "qty", 40),
    }
    item_code = _item_of(connection, scan) if form["item"] else None
    body = {
        "location": form["location"],
        "item_code": item_code or form["item"] or "?",
        "lot": form["lot"] or None,
        "qty": form["qty"],
    }
    checked, found = validate(CountEntryIn, body, _)
    errors = {("item" if key == "item_code" else key): message for key, message in found.items()}
    if not form["item"]:
        errors["item"] = _("Scan or type the item.")
    elif item_code is None:
        errors["item"] = _("No item has this barcode or code: %(scan)s", scan=form["item"])
    if not errors:
        order = counts.CountCommand(
            command=DocCommand(
                doc_id=count_id,
                actor=principal.name,
                visible=principal.sites,
                if_match=None,  # counters work side by side: each entry is its own line
                audit=audit,
                claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
            ),
            entries=[
                counts.CountEntry(
                    location=checked.location,
                    item_code=checked.item_code,
                    lot=checked.lot,
                    qty=checked.qty,
                )
            ],
            recount_percent=settings.count_recount_percent,
        )
        try:
            done = counts.count_command(
                connection, order, "count", projections=projections(request)
            )
        except IdempotentReplay:
            done = counts.get_count(connection, count_id, visible=principal.sites)
        except (*_REFUSALS, NotFoundError) as refused:
            where, _sep, reason = str(refused).partition(": ")
            name = where.rsplit(".", 1)[-1]
            if where.startswith("entries") and name in ("location", "qty", "lot"):
                errors[name] = reason
            elif where.startswith("entries"):
                errors["item"] = reason
            else:
                return _entry_page(
                    request,
                    connection,
                    principal,
                    count_id,
                    form=form,
                    refusal=str(refused),
                    status_code=_status_of(refused),
                )
        if not errors:
            line = next(
                (
                    line.line_no
                    for line in done.lines
                    if (line.location, line.item_code, line.lot or "")
                    == (checked.location, checked.item_code, checked.lot or "")
                ),
                None,
            )
            return redirect(
                request,
                url(f"{COUNT}/entry", id=count_id, location=checked.location, saved=line),
            )
    return _entry_page(
        request, connection, principal, count_id, form=form, errors=errors, status_code=422
    )


@pages.post("/count/submit", dependencies=[Requires("stock_count.count")])
async def count_submit_page(
    request: Request,
    *,
    count_id: IdQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    settings: SettingsDep,
) -> Response:
    """Counting done: to review, or some lines back for a second count (the page says
    which); a session with uncounted lines is refused, naming them."""
    raw = await request.body()
    posted = await request.form()
    order = counts.CountCommand(
        command=DocCommand(
            doc_id=count_id,
            actor=principal.name,
            visible=principal.sites,
            if_match=_if_match(posted),
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        ),
        recount_percent=settings.count_recount_percent,
    )
    try:
        with contextlib.suppress(IdempotentReplay):
            counts.count_command(connection, order, "submit", projections=projections(request))
    except _REFUSALS as refused:
        return _entry_page(
            request,
            connection,
            principal,
            count_id,
            refusal=str(refused),
            status_code=_status_of(refused),
        )
    return redirect(request, url(f"{COUNT}/entry", id=count_id))


# --- the menu ------------------------------------------------------------------------------------


def _menu() -> list[NavEntry]:
    return [
        NavEntry(OTHER_RECEIPTS, N_("Other receipts"), "other_movement.read", group=STOCK),
        NavEntry(OTHER_ISSUES, N_("Other issues"), "other_movement.read", group=STOCK),
        NavEntry(WRITE_OFFS, N_("Write-offs"), "write_off.read", group=STOCK),
        NavEntry(TRANSFERS, N_("Transfers"), "transfer.read", group=STOCK),
        NavEntry(COUNTS, N_("Stock counts"), "stock_count.read", group=STOCK),
        NavEntry(COUNT, N_("Count entry"), "stock_count.count", group=STOCK),
    ]


def add_to_menu() -> None:
    """The inventory group, after sales and before the reports (once)."""
    if any(entry.group == STOCK for entry in NAVIGATION):
        return
    at = next(
        (
            i
            for i, entry in enumerate(NAVIGATION)
            if entry.group == REPORT or entry.path == f"{CONSOLE_ROOT}/transfer"
        ),
        len(NAVIGATION),
    )
    NAVIGATION[at:at] = _menu()


add_to_menu()
