"""Receiving at central: receipts and their QC, purchase returns, supplier invoices.

Receipts and returns book stock through central's own event stream
(:mod:`central_api.services.central_events`); invoices move no stock. As for every
purchasing document: a role check per action, the caller's site scope (another site's
document is a 404), ``Idempotency-Key`` on every create and command, ``ETag`` on every
answer with one document and ``If-Match`` on commands (412 when stale), an audit entry.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import (
    ERRORS,
    After,
    CallerDep,
    Limit,
    answer,
    projections,
    replaying,
)
from central_api.api.idempotency import IdempotencyDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.schemas.receiving import (
    DecisionIn,
    EdgeQcIn,
    EdgeQcOut,
    InvoiceIn,
    InvoiceOut,
    InvoicePage,
    InvoiceStatusText,
    QcIn,
    ReceiptIn,
    ReceiptOut,
    ReceiptPage,
    ReceivingEventOut,
    ReturnIn,
    ReturnOut,
    ReturnPage,
)
from central_api.services import receiving as service
from central_api.services.documents import DocCommand
from jxc.contract import Code, SiteId, Text
from jxc.paths import PURCHASE_RECEIPTS, PURCHASE_RETURNS, SUPPLIER_INVOICES, below_api_root

DocId = Annotated[Code, Path(description="the document's id, e.g. GR000003")]


# --- receipts -----------------------------------------------------------------------------

receipts_router = APIRouter(prefix=below_api_root(PURCHASE_RECEIPTS), tags=["purchase receipts"])


def _receipt_out(receipt: service.Receipt, response: Response) -> ReceiptOut:
    return answer(response, receipt, ReceiptOut)


@receipts_router.get("", dependencies=[Requires("purchase_receipt.read")])
def read_receipts(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    po_id: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> ReceiptPage:
    """Receipts entered at central, by id; only the caller's sites."""
    found, next_after = service.list_receipts(
        connection,
        po_id=po_id,
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return ReceiptPage(
        receipts=[ReceiptOut.model_validate(each) for each in found], next_after=next_after
    )


@receipts_router.get("/events", dependencies=[Requires("purchase_receipt.read")], responses=ERRORS)
def read_receiving_events(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    po_id: Annotated[Code, Query(description="the purchase order")],
) -> list[ReceivingEventOut]:
    """Every receipt, QC move and return booked against a PO, from its site's edge
    (``stream`` edge) and from central (``stream`` central), oldest first."""
    return [
        ReceivingEventOut.model_validate(event)
        for event in service.po_events(connection, po_id, visible=principal.sites)
    ]


EventId = Annotated[Text, Path(max_length=36, description="the edge event's id")]


@receipts_router.get(
    "/events/{event_id}/qc",
    dependencies=[Requires("purchase_receipt.read")],
    responses=ERRORS,
)
def read_edge_qc(
    event_id: EventId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> EdgeQcOut:
    """The QC decision taken on a carton an edge booked into quarantine (404 until one is)."""
    return answer(
        response,
        service.get_edge_qc(connection, event_id, visible=principal.sites),
        EdgeQcOut,
    )


def _edge_qc_route(verb: str, summary: str) -> None:
    def command(
        *, event_id: EventId, body: EdgeQcIn, request: Request, call: CallerDep
    ) -> EdgeQcOut:
        order = call.command(service.EdgeQcCommand, body.reason, event_id=event_id)
        if verb == "release":
            order = replace(order, location=body.location)
        return call.run(
            lambda: service.decide_edge_quarantine(
                call.connection, order, verb, projections=projections(request)
            ),
            service.get_edge_qc,
            EdgeQcOut,
        )

    command.__name__ = f"{verb}_edge_carton"
    command.__doc__ = summary
    receipts_router.post(
        f"/events/{{event_id}}/{verb}",
        dependencies=[Requires("purchase_receipt.qc")],
        responses=ERRORS,
    )(command)


_edge_qc_route(
    "release",
    "A carton an edge put in quarantine passes QC: moved to the given storage location.",
)
_edge_qc_route(
    "reject", "A carton an edge put in quarantine fails QC: it goes back to the supplier."
)


@receipts_router.post(
    "",
    dependencies=[Requires("purchase_receipt.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_receipt(
    *,
    body: ReceiptIn,
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ReceiptOut:
    """Goods received against a PO's lines for its site, booked at once (采购入库)."""
    receipt = replaying(
        response,
        lambda: service.create_receipt(
            connection,
            po_id=body.po_id,
            note=body.note,
            lines=[
                service.ReceiptLineInput(
                    po_line=line.po_line,
                    qty=line.qty,
                    uom=line.uom,
                    qc=service.QcStatus(line.qc),
                    location=line.location,
                    lot=line.lot,
                    expiry=line.expiry,
                )
                for line in body.lines
            ],
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            projections=projections(request),
            claim=claim,
        ),
        lambda found: service.get_receipt(connection, found),
    )
    return _receipt_out(receipt, response)


@receipts_router.get(
    "/{receipt_id}", dependencies=[Requires("purchase_receipt.read")], responses=ERRORS
)
def read_receipt(
    receipt_id: DocId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> ReceiptOut:
    return _receipt_out(
        service.get_receipt(connection, receipt_id, visible=principal.sites), response
    )


def _qc_route(verb: str, summary: str) -> None:
    def command(*, receipt_id: DocId, body: QcIn, request: Request, call: CallerDep) -> ReceiptOut:
        order = service.QcCommand(
            command=call.command(DocCommand, body.reason, doc_id=receipt_id),
            line_no=body.line_no,
            location=body.location,
        )
        return call.run(
            lambda: service.decide_quarantine(
                call.connection, order, verb, projections=projections(request)
            ),
            service.get_receipt,
            ReceiptOut,
        )

    command.__name__ = f"{verb}_quarantined_line"
    command.__doc__ = summary
    receipts_router.post(
        f"/{{receipt_id}}/{verb}",
        dependencies=[Requires("purchase_receipt.qc")],
        responses=ERRORS,
    )(command)


_qc_route(
    "release",
    "A quarantined line passes QC: moved from quarantine to the given storage location.",
)
_qc_route("reject", "A quarantined line fails QC: it goes back to the supplier (returned).")


# --- returns ------------------------------------------------------------------------------

returns_router = APIRouter(prefix=below_api_root(PURCHASE_RETURNS), tags=["purchase returns"])


def _return_out(found: service.PurchaseReturn, response: Response) -> ReturnOut:
    return answer(response, found, ReturnOut)


@returns_router.get("", dependencies=[Requires("purchase_return.read")])
def read_returns(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    po_id: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> ReturnPage:
    found, next_after = service.list_returns(
        connection,
        po_id=po_id,
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return ReturnPage(
        returns=[ReturnOut.model_validate(each) for each in found], next_after=next_after
    )


@returns_router.post(
    "",
    dependencies=[Requires("purchase_return.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_return(
    *,
    body: ReturnIn,
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ReturnOut:
    """Received goods back to the PO's supplier (采购退货), booked at once."""
    found = replaying(
        response,
        lambda: service.create_return(
            connection,
            po_id=body.po_id,
            reason=body.reason,
            lines=[service.ReturnLineInput(**line.model_dump()) for line in body.lines],
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            projections=projections(request),
            claim=claim,
        ),
        lambda return_id: service.get_return(connection, return_id),
    )
    return _return_out(found, response)


@returns_router.get(
    "/{return_id}", dependencies=[Requires("purchase_return.read")], responses=ERRORS
)
def read_return(
    return_id: DocId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> ReturnOut:
    return _return_out(service.get_return(connection, return_id, visible=principal.sites), response)


# --- supplier invoices --------------------------------------------------------------------

invoices_router = APIRouter(prefix=below_api_root(SUPPLIER_INVOICES), tags=["supplier invoices"])


def _invoice_out(found: service.Invoice, response: Response) -> InvoiceOut:
    return answer(response, found, InvoiceOut)


@invoices_router.get("", dependencies=[Requires("supplier_invoice.read")])
def read_invoices(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status_: Annotated[InvoiceStatusText | None, Query(alias="status")] = None,
    po_id: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> InvoicePage:
    found, next_after = service.list_invoices(
        connection,
        status=None if status_ is None else service.InvoiceStatus(status_),
        po_id=po_id,
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return InvoicePage(
        invoices=[InvoiceOut.model_validate(each) for each in found], next_after=next_after
    )


@invoices_router.post(
    "",
    dependencies=[Requires("supplier_invoice.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_invoice(
    *,
    body: InvoiceIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    settings: SettingsDep,
    response: Response,
) -> InvoiceOut:
    """A supplier's invoice against a PO, matched three ways at once: ``matched``, or
    ``held`` with the differences per line for finance to approve or dispute."""
    found = replaying(
        response,
        lambda: service.create_invoice(
            connection,
            invoice_no=body.invoice_no,
            po_id=body.po_id,
            lines=[service.InvoiceLineInput(**line.model_dump()) for line in body.lines],
            tolerances=service.Tolerances(
                price=settings.invoice_price_tolerance, qty=settings.invoice_qty_tolerance
            ),
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda invoice_id: service.get_invoice(connection, invoice_id),
    )
    return _invoice_out(found, response)


@invoices_router.get(
    "/{invoice_id}", dependencies=[Requires("supplier_invoice.read")], responses=ERRORS
)
def read_invoice(
    invoice_id: DocId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> InvoiceOut:
    return _invoice_out(
        service.get_invoice(connection, invoice_id, visible=principal.sites), response
    )


def _invoice_route(verb: str, summary: str) -> None:
    def command(
        *, invoice_id: DocId, body: DecisionIn, call: CallerDep, settings: SettingsDep
    ) -> InvoiceOut:
        order = call.command(DocCommand, body.reason, doc_id=invoice_id)
        return call.run(
            lambda: service.decide_invoice(
                call.connection, order, verb, segregation=settings.supplier_invoice_sod
            ),
            service.get_invoice,
            InvoiceOut,
        )

    command.__name__ = f"{verb}_supplier_invoice"
    command.__doc__ = summary
    invoices_router.post(
        f"/{{invoice_id}}/{verb}",
        dependencies=[Requires("supplier_invoice.approve")],
        responses=ERRORS,
    )(command)


_invoice_route("approve", "held → approved: finance accepts the differences, with a reason.")
_invoice_route("dispute", "held or matched → disputed: sent back to the supplier, with a reason.")

routers: list[Any] = [receipts_router, returns_router, invoices_router]
