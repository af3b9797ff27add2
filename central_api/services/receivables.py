"""Sales invoices (销售发票), payments received (收款) and receivables ageing (应收账龄).

* An **invoice** is made from one shipment (at most one invoice per shipment: a unique
  key, and the shipment row is locked while invoicing): per shipment line, the shipped
  quantity at its SO line's price, amounts rounded to the cent, tax per line. Its due date
  comes from the customer's payment terms (the ``payment_terms`` reference list: ``days``
  counted from the invoice date, or from the end of its month); a customer without terms
  owes at once. An invoice is ``open`` until paid in full, then ``paid``.
* A **payment** applies to one invoice: partial and several are normal; more than is
  outstanding is a 409 (an overpayment is a credit, a document of its own). It is a
  command on the invoice (``If-Match``), so two cashiers cannot both take the last yuan.
* A **credit note** (红字发票) takes money off one invoice: a customer return's quantities
  at the invoiced prices, or a price correction's amounts, per invoice line; never more
  than a line has left, nor than is still owed (money back is a refund, not done here).
* **Ageing** on a given day: per customer, what is outstanding on that day (invoices
  dated on or before it, less payments received and credit notes dated on or before it)
  by days past due: ``current`` (not yet due), 1–30, 31–60, 61–90, over 90. Computed
  from the documents, so any past day can be asked for.
* **Credit exposure** (what the confirm of a sales order checks): open receivables plus
  what orders will still be invoiced (a confirmed order's gross amount, a closed one's
  shipped value, each less what is invoiced of it).

Everything here is money: the routes answer only to a role with the financial field
group; a warehouse clerk never sees it.
"""

from __future__ import annotations

import calendar
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from central_api.errors import ConflictError, InvalidError
from central_api.models.master import partners, reference_entries
from central_api.models.sales import (
    credit_note_lines,
    credit_notes,
    customer_payments,
    customer_return_lines,
    customer_returns,
    sales_invoice_lines,
    sales_invoices,
    sales_order_lines,
    shipments,
)
from central_api.services.audit import AuditContext
from central_api.services.documents import (
    DocCommand,
    UnknownDocumentError,
    document_write,
    fetch_document,
    list_page,
    locked_document,
    new_document_id,
    plain,
    read_one,
    site_conditions,
    utc,
)
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim
from central_api.services.shipping import get_shipment
from jxc.contract import MAX_ABS_AMOUNT

_ZERO = Decimal(0)
_CENT = Decimal("0.01")
BUCKETS = ("current", "1-30", "31-60", "61-90", "over_90")


class InvoiceStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    """Nothing left to pay: paid in full, or paid in part and the rest credited."""
    CREDITED = "credited"
    """Nothing left to pay and nothing was paid: credited in full."""


class CreditKind(StrEnum):
    RETURN = "return"
    """Goods came back: quantities of invoice lines, at their invoiced price."""
    PRICE = "price"
    """A price correction: amounts off invoice lines, no goods moved."""


def cents(value: Decimal) -> Decimal:
    """An amount as an invoice states it: rounded half up to the cent."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    line_no: int
    shipment_line: int
    so_line: int
    item_code: str
    qty: Decimal
    uom: str
    unit_price: Decimal
    """Per base unit, before tax."""
    tax_rate: Decimal
    amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True, slots=True)
class Payment:
    payment_id: str
    amount: Decimal
    received_on: date
    method: str
    reference: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CreditLine:
    line_no: int
    invoice_line: int
    item_code: str
    qty: Decimal | None
    uom: str
    amount: Decimal
    tax_amount: Decimal


@dataclass(frozen=True, slots=True)
class CreditNote:
    credit_id: str
    invoice_id: str
    credit_date: date
    kind: CreditKind
    return_id: str | None
    reason: str
    amount: Decimal
    tax_amount: Decimal
    gross_amount: Decimal
    created_by: str
    created_at: datetime
    lines: list[CreditLine] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SalesInvoice:
    invoice_id: str
    shipment_id: str
    so_id: str
    customer: str
    site_id: str
    invoice_date: date
    due_date: date
    amount: Decimal
    tax_amount: Decimal
    gross_amount: Decimal
    paid_amount: Decimal
    status: InvoiceStatus
    created_by: str
    created_at: datetime
    version: int
    updated_at: datetime
    lines: list[InvoiceLine] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    credit_notes: list[CreditNote] = field(default_factory=list)

    @property
    def credited_amount(self) -> Decimal:
        return plain(sum((note.gross_amount for note in self.credit_notes), _ZERO))

    @property
    def outstanding(self) -> Decimal:
        return plain(self.gross_amount - self.paid_amount - self.credited_amount)


# --- reading --------------------------------------------------------------------------------


def _with_lines(connection: Connection, rows: Sequence[Any]) -> list[SalesInvoice]:
    lines: dict[str, list[InvoiceLine]] = defaultdict(list)
    paid: dict[str, list[Payment]] = defaultdict(list)
    credits: dict[str, list[CreditNote]] = defaultdict(list)
    ids = [row.invoice_id for row in rows]
    if ids:
        for line in connection.execute(
            select(sales_invoice_lines)
            .where(sales_invoice_lines.c.invoice_id.in_(ids))
            .order_by(sales_invoice_lines.c.invoice_id, sales_invoice_lines.c.line_no)
        ):
            lines[line.invoice_id].append(
                InvoiceLine(
                    **{name: getattr(line, name) for name in InvoiceLine.__dataclass_fields__}
                )
            )
        for row in connection.execute(
            select(customer_payments)
            .where(customer_payments.c.invoice_id.in_(ids))
            .order_by(customer_payments.c.payment_id)
        ):
            paid[row.invoice_id].append(
                Payment(
                    payment_id=row.payment_id,
                    amount=row.amount,
                    received_on=row.received_on,
                    method=row.method,
                    reference=row.reference,
                    created_by=row.created_by,
                    created_at=utc(row.created_at),  # type: ignore[arg-type]
                )
            )
        for note in _credit_notes(connection, ids).values():
            credits[note.invoice_id].append(note)
    return [
        SalesInvoice(
            invoice_id=row.invoice_id,
            shipment_id=row.shipment_id,
            so_id=row.so_id,
            customer=row.customer_code,
            site_id=row.site_id,
            invoice_date=row.invoice_date,
            due_date=row.due_date,
            amount=row.amount,
            tax_amount=row.tax_amount,
            gross_amount=row.gross_amount,
            paid_amount=row.paid_amount,
            status=InvoiceStatus(row.status),
            created_by=row.created_by,
            created_at=utc(row.created_at),  # type: ignore[arg-type]
            version=row.version,
            updated_at=utc(row.updated_at),  # type: ignore[arg-type]
            lines=lines[row.invoice_id],
            payments=paid[row.invoice_id],
            credit_notes=credits[row.invoice_id],
        )
        for row in rows
    ]


def _credit_notes(connection: Connection, invoice_ids: list[str]) -> dict[str, CreditNote]:
    """The credit notes of those invoices with their lines, by credit id in id order."""
    notes = connection.execute(
        select(credit_notes)
        .where(credit_notes.c.invoice_id.in_(invoice_ids))
        .order_by(credit_notes.c.credit_id)
    ).all()
    lines: dict[str, list[CreditLine]] = defaultdict(list)
    if notes:
        for line in connection.execute(
            select(credit_note_lines)
            .where(credit_note_lines.c.credit_id.in_([note.credit_id for note in notes]))
            .order_by(credit_note_lines.c.credit_id, credit_note_lines.c.line_no)
        ):
            lines[line.credit_id].append(
                CreditLine(
                    **{name: getattr(line, name) for name in CreditLine.__dataclass_fields__}
                )
            )
    return {
        note.credit_id: CreditNote(
            credit_id=note.credit_id,
            invoice_id=note.invoice_id,
            credit_date=note.credit_date,
            kind=CreditKind(note.kind),
            return_id=note.return_id,
            reason=note.reason,
            amount=note.amount,
            tax_amount=note.tax_amount,
            gross_amount=note.gross_amount,
            created_by=note.created_by,
            created_at=utc(note.created_at),  # type: ignore[arg-type]
            lines=lines[note.credit_id],
        )
        for note in notes
    }


def _read(connection: Connection, invoice_id: str, *, lock: bool = False) -> SalesInvoice | None:
    return read_one(
        connection,
        sales_invoices,
        sales_invoices.c.invoice_id,
        invoice_id,
        build=lambda rows: _with_lines(connection, rows),
        lock=lock,
    )


def get_invoice(
    connection: Connection, invoice_id: str, *, visible: frozenset[str] | None = None
) -> SalesInvoice:
    return fetch_document(connection, _read, "sales invoice", invoice_id, visible)


def list_invoices(
    connection: Connection,
    *,
    customer: str | None,
    status: InvoiceStatus | None,
    site_id: str | None,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> tuple[list[SalesInvoice], str | None]:
    filters = []
    if customer is not None:
        filters.append(sales_invoices.c.customer_code == customer)
    if status is not None:
        filters.append(sales_invoices.c.status == status.value)
    return list_page(
        connection,
        sales_invoices,
        filters=filters,
        scope=(site_id, visible),
        after=after,
        limit=limit,
        build=lambda rows: _with_lines(connection, rows),
    )


# --- invoicing ------------------------------------------------------------------------------


def due_date(connection: Connection, customer: str, invoice_date: date) -> date:
    """The day an invoice of ``customer`` dated ``invoice_date`` falls due, by the
    customer's payment terms (none: at once)."""
    terms = connection.execute(
        select(partners.c.payment_terms).where(partners.c.code == customer)
    ).scalar_one_or_none()
    if terms is None:
        return invoice_date
    attrs = connection.execute(
        select(reference_entries.c.attrs).where(
            reference_entries.c.list_name == "payment_terms", reference_entries.c.code == terms
        )
    ).scalar_one_or_none()
    if attrs is None:
        raise ConflictError(
            f"customer {customer} names payment terms {terms!r}, which are not in the "
            "payment_terms list; add them or correct the customer"
        )
    found = json.loads(attrs)
    start = invoice_date
    if found.get("basis") == "month_end":
        last = calendar.monthrange(invoice_date.year, invoice_date.month)[1]
        start = invoice_date.replace(day=last)
    try:
        return start + timedelta(days=int(found.get("days", 0)))
    except OverflowError:
        raise InvalidError(f"invoice_date: {invoice_date} is too late to fall due") from None


def create_invoice(
    connection: Connection,
    *,
    shipment_id: str,
    invoice_date: date,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
) -> SalesInvoice:
    """The invoice of one shipment, at its SO lines' prices. ``IdempotentReplay`` on a
    retry; a shipment invoiced already is a 409 naming its invoice."""
    with document_write(
        connection, action="sales_invoice.create", audit=audit, claim=claim
    ) as written:
        held = connection.execute(
            select(shipments.c.site_id)
            .where(shipments.c.shipment_id == shipment_id)
            .with_for_update()
        ).scalar_one_or_none()
        if held is None or (visible is not None and held not in visible):
            raise UnknownDocumentError("shipment", shipment_id)
        shipment = get_shipment(connection, shipment_id)
        taken = connection.execute(
            select(sales_invoices.c.invoice_id).where(sales_invoices.c.shipment_id == shipment_id)
        ).scalar_one_or_none()
        if taken is not None:
            raise ConflictError(f"shipment {shipment_id} is invoiced already, as {taken}")
        prices = {
            row.line_no: row
            for row in connection.execute(
                select(sales_order_lines).where(sales_order_lines.c.so_id == shipment.so_id)
            ).all()
        }
        rows = []
        for line in shipment.lines:
            so_line = prices[line.so_line]
            per_base = so_line.unit_price * so_line.qty / so_line.base_qty
            amount = cents(per_base * line.qty)
            rows.append(
                {
                    "line_no": line.line_no,
                    "shipment_line": line.line_no,
                    "so_line": line.so_line,
                    "item_code": line.item_code,
                    "qty": line.qty,
                    "uom": line.uom,
                    "unit_price": plain(per_base.quantize(Decimal("0.000001"))),
                    "tax_rate": so_line.tax_rate,
                    "amount": amount,
                    "tax_amount": cents(amount * so_line.tax_rate),
                }
            )
        net = sum((row["amount"] for row in rows), _ZERO)
        tax = sum((row["tax_amount"] for row in rows), _ZERO)
        invoice_id = new_document_id(
            connection, sequence="#sales_invoice", prefix="SI", column=sales_invoices.c.invoice_id
        )
        connection.execute(
            insert(sales_invoices).values(
                invoice_id=invoice_id,
                shipment_id=shipment_id,
                so_id=shipment.so_id,
                customer_code=shipment.customer,
                site_id=shipment.site_id,
                invoice_date=invoice_date,
                due_date=due_date(connection, shipment.customer, invoice_date),
                amount=net,
                tax_amount=tax,
                gross_amount=net + tax,
                paid_amount=_ZERO,
                status=InvoiceStatus.OPEN.value,
                created_by=actor,
                created_at=written.now,
                version=1,
                updated_at=written.now,
            )
        )
        connection.execute(
            insert(sales_invoice_lines), [{"invoice_id": invoice_id, **row} for row in rows]
        )
        written.doc_id, written.site_id = invoice_id, shipment.site_id
        written.after = {
            "shipment_id": shipment_id,
            "invoice_date": invoice_date.isoformat(),
            "amount": str(net),
            "tax_amount": str(tax),
        }
    return get_invoice(connection, invoice_id)


@dataclass(frozen=True, slots=True)
class PaymentInput:
    amount: Decimal
    received_on: date
    method: str
    reference: str = ""


def _locked(connection: Connection, command: DocCommand) -> SalesInvoice:
    """The invoice a command is on, locked for the command's transaction, If-Match checked."""
    return locked_document(
        connection,
        _read,
        "sales invoice",
        command.doc_id,
        command.visible,
        if_match=command.if_match,
    )


def receive_payment(
    connection: Connection, command: DocCommand, given: PaymentInput
) -> SalesInvoice:
    """A payment received against the invoice: partial or in full, never more than is
    outstanding; the invoice is ``paid`` once nothing is."""
    if not _ZERO < given.amount < MAX_ABS_AMOUNT or given.amount != cents(given.amount):
        raise InvalidError("amount: a positive amount in yuan and fen (two decimals at most)")
    with document_write(
        connection, action="sales_invoice.payment", audit=command.audit, claim=command.claim
    ) as written:
        found = _locked(connection, command)
        if given.amount > found.outstanding:
            raise ConflictError(
                f"sales invoice {found.invoice_id} has {found.outstanding} outstanding; "
                f"{plain(given.amount)} is more (record an overpayment as a credit)"
            )
        payment_id = new_document_id(
            connection,
            sequence="#payment",
            prefix="RP",
            column=customer_payments.c.payment_id,
        )
        connection.execute(
            insert(customer_payments).values(
                payment_id=payment_id,
                invoice_id=found.invoice_id,
                customer_code=found.customer,
                site_id=found.site_id,
                amount=given.amount,
                received_on=given.received_on,
                method=given.method,
                reference=given.reference,
                created_by=command.actor,
                created_at=written.now,
            )
        )
        paid = found.paid_amount + given.amount
        status = _settled(found.gross_amount, paid, found.credited_amount)
        connection.execute(
            update(sales_invoices)
            .where(sales_invoices.c.invoice_id == found.invoice_id)
            .values(
                paid_amount=paid,
                status=status.value,
                version=found.version + 1,
                updated_at=written.now,
            )
        )
        written.doc_id, written.site_id = found.invoice_id, found.site_id
        written.before = {"paid_amount": str(found.paid_amount), "version": found.version}
        written.after = {
            "payment_id": payment_id,
            "amount": str(given.amount),
            "received_on": given.received_on.isoformat(),
            "paid_amount": str(paid),
            "status": status.value,
            "version": found.version + 1,
        }
    return get_invoice(connection, command.doc_id)


def _settled(gross: Decimal, paid: Decimal, credited: Decimal) -> InvoiceStatus:
    if paid + credited < gross:
        return InvoiceStatus.OPEN
    return InvoiceStatus.PAID if paid > 0 else InvoiceStatus.CREDITED


# --- credit notes (红字发票) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreditLineInput:
    invoice_line: int
    qty: Decimal | None = None
    """A return's quantity, in the invoice line's unit."""
    amount: Decimal | None = None
    """A price correction's amount before tax, in yuan and fen."""


@dataclass(frozen=True, slots=True)
class CreditInput:
    kind: CreditKind
    reason: str
    credit_date: date
    lines: list[CreditLineInput]
    return_id: str | None = None


def _credited_so_far(invoice: SalesInvoice) -> dict[int, tuple[Decimal, Decimal, Decimal]]:
    """Per invoice line: quantity, amount and tax credited by earlier credit notes."""
    taken: dict[int, tuple[Decimal, Decimal, Decimal]] = {}
    for note in invoice.credit_notes:
        for line in note.lines:
            qty, amount, tax = taken.get(line.invoice_line, (_ZERO, _ZERO, _ZERO))
            taken[line.invoice_line] = (
                qty + (line.qty or _ZERO),
                amount + line.amount,
                tax + line.tax_amount,
            )
    return taken


def _returned(connection: Connection, invoice: SalesInvoice, return_id: str) -> dict[int, Decimal]:
    """What the customer return ``return_id`` brought back per SO line, checked to be a
    received return of the invoice's own order."""
    found = connection.execute(
        select(customer_returns.c.so_id, customer_returns.c.status).where(
            customer_returns.c.return_id == return_id
        )
    ).one_or_none()
    if found is None or found.so_id != invoice.so_id:
        raise ConflictError(
            f"return_id: {return_id} is not a customer return of order {invoice.so_id}"
        )
    if found.status == "authorised":
        raise ConflictError(
            f"return_id: {return_id} is authorised but not received; credit the goods once "
            "they are back"
        )
    back: dict[int, Decimal] = defaultdict(lambda: _ZERO)
    for so_line, qty in connection.execute(
        select(customer_return_lines.c.so_line, customer_return_lines.c.received_qty).where(
            customer_return_lines.c.return_id == return_id
        )
    ).all():
        back[so_line] += qty
    return back


def _return_amounts(
    where: str,
    line: InvoiceLine,
    wanted: CreditLineInput,
    before: tuple[Decimal, Decimal, Decimal],
    *,
    back: dict[int, Decimal] | None,
    return_id: str | None,
) -> tuple[Decimal, Decimal]:
    """A returned quantity's amount and tax at the invoiced price; the last of a line is
    exactly what is left of it (no rounding drift over several credits)."""
    qty_before, amount_before, tax_before = before
    if wanted.qty is None or wanted.amount is not None or wanted.qty <= 0:
        raise InvalidError(f"{where}.qty: a return credits a positive quantity")
    qty_left = line.qty - qty_before
    if wanted.qty > qty_left:
        raise ConflictError(
            f"{where}.qty: line {line.line_no} invoiced {plain(line.qty)} {line.uom}, "
            f"{plain(qty_before)} credited already; {plain(wanted.qty)} is more than "
            f"the {plain(qty_left)} left"
        )
    if back is not None and wanted.qty > back.get(line.so_line, _ZERO):
        raise ConflictError(
            f"{where}.qty: return {return_id} brought back "
            f"{plain(back.get(line.so_line, _ZERO))} {line.uom} of order line "
            f"{line.so_line}; {plain(wanted.qty)} is more"
        )
    if wanted.qty == qty_left:
        return line.amount - amount_before, line.tax_amount - tax_before
    amount = cents(line.unit_price * wanted.qty)
    return amount, cents(amount * line.tax_rate)


def _price_amounts(
    where: str, line: InvoiceLine, wanted: CreditLineInput, before: tuple[Decimal, Decimal, Decimal]
) -> tuple[Decimal, Decimal]:
    """A price correction's amount as given, and its tax at the line's rate."""
    _qty_before, amount_before, tax_before = before
    if wanted.amount is None or wanted.qty is not None:
        raise InvalidError(f"{where}.amount: a price correction credits an amount")
    if not _ZERO < wanted.amount < MAX_ABS_AMOUNT or wanted.amount != cents(wanted.amount):
        raise InvalidError(
            f"{where}.amount: a positive amount in yuan and fen (two decimals at most)"
        )
    if wanted.amount == line.amount - amount_before:
        return wanted.amount, line.tax_amount - tax_before
    return wanted.amount, cents(wanted.amount * line.tax_rate)


def _credit_rows(
    connection: Connection, invoice: SalesInvoice, given: CreditInput
) -> list[dict[str, Any]]:
    """The credit note's lines, each checked against what is left of its invoice line."""
    by_no = {line.line_no: line for line in invoice.lines}
    taken = _credited_so_far(invoice)
    back = _returned(connection, invoice, given.return_id) if given.return_id else None
    seen: set[int] = set()
    rows = []
    for i, wanted in enumerate(given.lines):
        where = f"lines[{i}]"
        line = by_no.get(wanted.invoice_line)
        if line is None:
            raise InvalidError(
                f"{where}.invoice_line: invoice {invoice.invoice_id} has no line "
                f"{wanted.invoice_line}"
            )
        if wanted.invoice_line in seen:
            raise InvalidError(f"{where}.invoice_line: line {wanted.invoice_line} twice")
        seen.add(wanted.invoice_line)
        before = taken.get(line.line_no, (_ZERO, _ZERO, _ZERO))
        if given.kind is CreditKind.RETURN:
            amount, tax = _return_amounts(
                where, line, wanted, before, back=back, return_id=given.return_id
            )
        else:
            amount, tax = _price_amounts(where, line, wanted, before)
        amount_left = line.amount - before[1]
        if amount > amount_left:
            raise ConflictError(
                f"{where}.amount: line {line.line_no} has {plain(amount_left)} left to "
                f"credit; {plain(amount)} is more"
            )
        rows.append(
            {
                "line_no": i + 1,
                "invoice_line": line.line_no,
                "item_code": line.item_code,
                "qty": wanted.qty if given.kind is CreditKind.RETURN else None,
                "uom": line.uom,
                "amount": amount,
                "tax_amount": tax,
            }
        )
    return rows


def credit_invoice(connection: Connection, command: DocCommand, given: CreditInput) -> SalesInvoice:
    """A credit note against the invoice: a return's quantities at the invoiced prices, or a
    price correction's amounts, per invoice line, never more than a line has left nor
    more than is still owed on the invoice. What is owed, and so the ageing and the
    customer's credit exposure, falls by its gross amount from its date on."""
    reason = given.reason.strip()
    if not reason:
        raise InvalidError("reason: say why the customer is credited")
    if not given.lines:
        raise InvalidError("lines: credit at least one invoice line")
    with document_write(
        connection, action="sales_invoice.credit", audit=command.audit, claim=command.claim
    ) as written:
        found = _locked(connection, command)
        if given.credit_date < found.invoice_date:
            raise InvalidError(
                f"credit_date: {given.credit_date} is before the invoice's date "
                f"{found.invoice_date}"
            )
        rows = _credit_rows(connection, found, given)
        net = sum((row["amount"] for row in rows), _ZERO)
        tax = sum((row["tax_amount"] for row in rows), _ZERO)
        if net + tax > found.outstanding:
            raise ConflictError(
                f"sales invoice {found.invoice_id} has {found.outstanding} outstanding; a "
                f"credit of {plain(net + tax)} is more (paying money back is a refund, "
                "not a credit note)"
            )
        credit_id = new_document_id(
            connection, sequence="#credit_note", prefix="CN", column=credit_notes.c.credit_id
        )
        connection.execute(
            insert(credit_notes).values(
                credit_id=credit_id,
                invoice_id=found.invoice_id,
                customer_code=found.customer,
                site_id=found.site_id,
                credit_date=given.credit_date,
                kind=given.kind.value,
                return_id=given.return_id,
                reason=reason,
                amount=net,
                tax_amount=tax,
                gross_amount=net + tax,
                created_by=command.actor,
                created_at=written.now,
            )
        )
        connection.execute(
            insert(credit_note_lines), [{"credit_id": credit_id, **row} for row in rows]
        )
        status = _settled(found.gross_amount, found.paid_amount, found.credited_amount + net + tax)
        connection.execute(
            update(sales_invoices)
            .where(sales_invoices.c.invoice_id == found.invoice_id)
            .values(status=status.value, version=found.version + 1, updated_at=written.now)
        )
        written.doc_id, written.site_id = found.invoice_id, found.site_id
        written.before = {"outstanding": str(found.outstanding), "version": found.version}
        written.after = {
            "credit_id": credit_id,
            "kind": given.kind.value,
            "return_id": given.return_id,
            "reason": reason,
            "amount": str(net),
            "tax_amount": str(tax),
            "outstanding": str(plain(found.outstanding - net - tax)),
            "status": status.value,
            "version": found.version + 1,
        }
    return get_invoice(connection, command.doc_id)


# --- ageing and exposure ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerAgeing:
    customer: str
    buckets: dict[str, Decimal]

    @property
    def total(self) -> Decimal:
        return plain(sum(self.buckets.values(), _ZERO))


def bucket(due: date, on: date) -> str:
    """The ageing bucket of an amount due on ``due``, seen on ``on``."""
    late = (on - due).days
    if late <= 0:
        return "current"
    if late <= 30:
        return "1-30"
    if late <= 60:
        return "31-60"
    if late <= 90:
        return "61-90"
    return "over_90"


def ageing(
    connection: Connection,
    *,
    on: date,
    customer: str | None,
    visible: frozenset[str] | None,
) -> list[CustomerAgeing]:
    """What each customer owes on ``on``, by days past due (customers owing nothing are
    left out)."""
    conditions = [sales_invoices.c.invoice_date <= on]
    conditions += site_conditions(sales_invoices.c.site_id, None, visible)
    if customer is not None:
        conditions.append(sales_invoices.c.customer_code == customer)
    paid = (
        select(
            customer_payments.c.invoice_id,
            func.sum(customer_payments.c.amount).label("paid"),
        )
        .where(customer_payments.c.received_on <= on)
        .group_by(customer_payments.c.invoice_id)
        .subquery()
    )
    credited = (
        select(
            credit_notes.c.invoice_id,
            func.sum(credit_notes.c.gross_amount).label("credited"),
        )
        .where(credit_notes.c.credit_date <= on)
        .group_by(credit_notes.c.invoice_id)
        .subquery()
    )
    with read_snapshot(connection):
        rows = connection.execute(
            select(
                sales_invoices.c.customer_code,
                sales_invoices.c.due_date,
                sales_invoices.c.gross_amount,
                paid.c.paid,
                credited.c.credited,
            )
            .outerjoin(paid, paid.c.invoice_id == sales_invoices.c.invoice_id)
            .outerjoin(credited, credited.c.invoice_id == sales_invoices.c.invoice_id)
            .where(*conditions)
        ).all()
    owed: dict[str, dict[str, Decimal]] = {}
    for row in rows:
        left = row.gross_amount - Decimal(row.paid or 0) - Decimal(row.credited or 0)
        if left <= 0:
            continue
        buckets = owed.setdefault(row.customer_code, dict.fromkeys(BUCKETS, _ZERO))
        buckets[bucket(row.due_date, on)] += left
    return [
        CustomerAgeing(code, {name: plain(value) for name, value in owed[code].items()})
        for code in sorted(owed)
    ]
