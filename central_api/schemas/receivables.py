"""Receivables' HTTP shapes: sales invoices with their lines and payments, ageing.

Every amount is money: the routes answer only to a role with the financial field group,
and the amounts are ``Financial[...]`` besides, so no answer can carry them elsewhere.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText, Financial
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text

InvoiceStatusText = Literal["open", "paid", "credited"]
CreditKindText = Literal["return", "price"]
Money = Financial[DecimalText | None]


class SalesInvoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shipment_id: Code
    invoice_date: date | None = Field(default=None, description="absent: today")


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: ExactDecimal = Field(description="received, tax included, in yuan", examples=["100"])
    received_on: date | None = Field(default=None, description="absent: today")
    method: Annotated[Text, Field(min_length=1, max_length=32)] = Field(
        description="bank transfer, cash, card...", examples=["bank"]
    )
    reference: Annotated[Text, Field(max_length=64)] = ""


class CreditLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_line: Int64 = Field(ge=1)
    qty: ExactDecimal | None = Field(
        default=None, description="kind return: the quantity credited, in the line's unit"
    )
    amount: ExactDecimal | None = Field(
        default=None, description="kind price: the amount before tax credited, in yuan"
    )


class CreditNoteIn(BaseModel):
    """A credit note against the invoice: ``return`` credits quantities at the invoiced
    price (``return_id`` may name the received customer return), ``price`` credits amounts
    before tax; tax follows at each line's rate."""

    model_config = ConfigDict(extra="forbid")

    kind: CreditKindText
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
    credit_date: date | None = Field(default=None, description="absent: today")
    return_id: Code | None = None
    lines: Annotated[list[CreditLineIn], Field(min_length=1, max_length=1000)]


class CreditLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    invoice_line: Int64
    item_code: Code
    qty: DecimalText | None
    uom: Text
    amount: Money = None
    tax_amount: Money = None


class CreditNoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    credit_id: Code
    credit_date: date
    kind: CreditKindText
    return_id: Code | None
    reason: Text
    amount: Money = None
    tax_amount: Money = None
    gross_amount: Money = None
    created_by: Text
    created_at: datetime
    lines: list[CreditLineOut]


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    shipment_line: Int64
    so_line: Int64
    item_code: Code
    qty: DecimalText
    uom: Text
    unit_price: Money = None
    tax_rate: Money = None
    amount: Money = None
    tax_amount: Money = None


class PaymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    payment_id: Code
    amount: Money = None
    received_on: date
    method: Text
    reference: Text
    created_by: Text
    created_at: datetime


class SalesInvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    invoice_id: Code
    shipment_id: Code
    so_id: Code
    customer: Code
    site_id: SiteId
    invoice_date: date
    due_date: date
    amount: Money = None
    tax_amount: Money = None
    gross_amount: Money = None
    paid_amount: Money = None
    credited_amount: Money = None
    outstanding: Money = None
    status: InvoiceStatusText
    created_by: Text
    created_at: datetime
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[InvoiceLineOut]
    payments: list[PaymentOut]
    credit_notes: list[CreditNoteOut] = []


class SalesInvoicePage(BaseModel):
    sales_invoices: list[SalesInvoiceOut]
    next_after: Code | None


class CustomerAgeingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer: Code
    buckets: Financial[dict[str, DecimalText] | None] = Field(
        default=None, description="current, 1-30, 31-60, 61-90, over_90 days past due"
    )
    total: Money = None


class AgeingOut(BaseModel):
    on: date
    customers: list[CustomerAgeingOut]
