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

InvoiceStatusText = Literal["open", "paid"]
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
    outstanding: Money = None
    status: InvoiceStatusText
    created_by: Text
    created_at: datetime
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[InvoiceLineOut]
    payments: list[PaymentOut]


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
