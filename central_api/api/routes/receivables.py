"""Receivables: sales invoices from shipments, payments received, ageing.

All money: besides its action, every route here refuses (403) a role without the
financial field group, so a clerk granted an action by mistake still sees no amount. As
for every document: site scope (another site's invoice is a 404), ``Idempotency-Key`` on
the create and the payment, ``ETag``/``If-Match`` (412 when stale), an audit entry.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from central_api.api.deps import ConnDep
from central_api.api.documents import ERRORS, After, CallerDep, Limit, answer
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError
from central_api.schemas.receivables import (
    AgeingOut,
    CreditNoteIn,
    CustomerAgeingOut,
    InvoiceStatusText,
    PaymentIn,
    SalesInvoiceIn,
    SalesInvoiceOut,
    SalesInvoicePage,
)
from central_api.services import receivables as service
from central_api.services.documents import DocCommand
from jxc.contract import Code, SiteId
from jxc.paths import RECEIVABLES_AGEING, SALES_INVOICES, below_api_root

InvoiceId = Annotated[Code, Path(description="the invoice's id, e.g. SI000003")]


def _financial(principal: PrincipalDep) -> Principal:
    if not principal.financial:
        raise ForbiddenError("receivables are amounts: your roles do not show them")
    return principal


Financial = Depends(_financial)

invoices_router = APIRouter(
    prefix=below_api_root(SALES_INVOICES), tags=["sales invoices"], dependencies=[Financial]
)
ageing_router = APIRouter(
    prefix=below_api_root(RECEIVABLES_AGEING), tags=["receivables"], dependencies=[Financial]
)


def _today() -> date:
    return datetime.now(UTC).date()


@invoices_router.get("", dependencies=[Requires("sales_invoice.read")])
def read_invoices(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    customer: Annotated[Code | None, Query()] = None,
    status_: Annotated[InvoiceStatusText | None, Query(alias="status")] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> SalesInvoicePage:
    found, next_after = service.list_invoices(
        connection,
        customer=customer,
        status=None if status_ is None else service.InvoiceStatus(status_),
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return SalesInvoicePage(
        sales_invoices=[SalesInvoiceOut.model_validate(each) for each in found],
        next_after=next_after,
    )


@invoices_router.post(
    "",
    dependencies=[Requires("sales_invoice.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_invoice(*, body: SalesInvoiceIn, call: CallerDep) -> SalesInvoiceOut:
    """The invoice of one shipment at its order's prices; due by the customer's terms."""
    return call.run(
        lambda: service.create_invoice(
            call.connection,
            shipment_id=body.shipment_id,
            invoice_date=body.invoice_date or _today(),
            actor=call.principal.name,
            visible=call.principal.sites,
            audit=call.audit,
            claim=call.claim,
        ),
        service.get_invoice,
        SalesInvoiceOut,
    )


@invoices_router.get(
    "/{invoice_id}", dependencies=[Requires("sales_invoice.read")], responses=ERRORS
)
def read_invoice(
    invoice_id: InvoiceId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> SalesInvoiceOut:
    found = service.get_invoice(connection, invoice_id, visible=principal.sites)
    return answer(response, found, SalesInvoiceOut)


@invoices_router.post(
    "/{invoice_id}/payments", dependencies=[Requires("sales_invoice.payment")], responses=ERRORS
)
def add_payment(*, invoice_id: InvoiceId, body: PaymentIn, call: CallerDep) -> SalesInvoiceOut:
    """A payment received against the invoice (partial or in full, several allowed)."""
    order = call.command(DocCommand, None, doc_id=invoice_id)
    given = service.PaymentInput(
        amount=body.amount,
        received_on=body.received_on or _today(),
        method=body.method,
        reference=body.reference,
    )
    return call.run(
        lambda: service.receive_payment(call.connection, order, given),
        service.get_invoice,
        SalesInvoiceOut,
    )


@invoices_router.post(
    "/{invoice_id}/credit-notes",
    dependencies=[Requires("sales_invoice.credit")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_credit_note(
    *, invoice_id: InvoiceId, body: CreditNoteIn, call: CallerDep
) -> SalesInvoiceOut:
    """A credit note (红字发票) against the invoice, for a customer return (quantities at the
    invoiced price) or a price correction (amounts): what is owed falls by its gross
    amount, in the ageing from its date on. Answers the invoice with its credit notes."""
    order = call.command(DocCommand, None, doc_id=invoice_id)
    given = service.CreditInput(
        kind=service.CreditKind(body.kind),
        reason=body.reason,
        credit_date=body.credit_date or _today(),
        return_id=body.return_id,
        lines=[
            service.CreditLineInput(
                invoice_line=line.invoice_line, qty=line.qty, amount=line.amount
            )
            for line in body.lines
        ],
    )
    return call.run(
        lambda: service.credit_invoice(call.connection, order, given),
        service.get_invoice,
        SalesInvoiceOut,
    )


@ageing_router.get("", dependencies=[Requires("receivable.read")])
def read_ageing(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    on: Annotated[date | None, Query(description="the day seen from; absent: today")] = None,
    customer: Annotated[Code | None, Query()] = None,
) -> AgeingOut:
    """应收账龄: per customer, what is outstanding on the day by days past due (current,
    1-30, 31-60, 61-90, over 90); the caller's sites only."""
    day = on or _today()
    found = service.ageing(connection, on=day, customer=customer, visible=principal.sites)
    return AgeingOut(
        on=day,
        customers=[
            CustomerAgeingOut(customer=each.customer, buckets=each.buckets, total=each.total)
            for each in found
        ],
    )


routers: list[Any] = [invoices_router, ageing_router]
