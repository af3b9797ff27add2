"""HTTP shapes of receiving at central, QC, purchase returns and supplier invoices.

A receipt or a return carries no price, so a warehouse clerk sees all of it. A supplier
invoice is financial as a whole: its prices, tax and amounts, and the match's price and
amount differences, are ``Financial[...]`` and absent for a role without the group.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText, Financial
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text
from jxc.feed import Uom

Note = Annotated[Text, Field(max_length=1000)]
Lot = Annotated[Text, Field(min_length=1, max_length=40)]
PoLineNo = Annotated[Int64, Field(ge=1, description="the PO line's number")]
MAX_LINES = 500
QcText = Literal["accepted", "quarantine", "rejected"]
QcStatusText = Literal["accepted", "quarantine", "released", "rejected"]
InvoiceStatusText = Literal["matched", "held", "approved", "disputed"]
EdgeQcText = Literal["pending", "released", "rejected"]


class ReceiptLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    po_line: PoLineNo
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(default=None, description="any unit of the item; absent: base unit")
    qc: QcText = Field(
        default="accepted",
        description="accepted: into location; quarantine: into the site's quarantine "
        "location until released or rejected; rejected: received and returned at once",
    )
    location: Code | None = Field(
        default=None, description="a storage or receiving location (accepted lines)"
    )
    lot: Lot | None = None
    expiry: date | None = None


class ReceiptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    po_id: Code
    note: Note = ""
    lines: Annotated[list[ReceiptLineIn], Field(min_length=1, max_length=MAX_LINES)]


class ReceiptLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    po_line: Int64
    item_code: Code
    qty: DecimalText
    uom: Text
    base_qty: DecimalText
    base_uom: Text
    lot: Text | None
    expiry: date | None
    location: Text = Field(description="where the goods are now")
    qc_status: QcStatusText
    qc_by: Text | None
    qc_at: datetime | None
    qc_reason: Text | None


class ReceiptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    receipt_id: Code
    po_id: Code
    site_id: SiteId
    note: Text
    created_by: Text
    created_at: datetime
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[ReceiptLineOut]


class ReceiptPage(BaseModel):
    receipts: list[ReceiptOut]
    next_after: Code | None


class QcIn(BaseModel):
    """A QC decision on one quarantined line of a receipt."""

    model_config = ConfigDict(extra="forbid")

    line_no: Annotated[Int64, Field(ge=1)]
    location: Code | None = Field(
        default=None, description="release: the storage or receiving location it goes to"
    )
    reason: Note | None = None


class ReceivingEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: Text
    stream: Literal["edge", "central"]
    site_id: SiteId
    seq: Int64
    occurred_at: datetime
    kind: Text
    item: Code
    lot: Text | None
    expiry: date | None
    location: Text
    qty: DecimalText
    uom: Text
    ref: Text | None
    actor: Text | None
    doc_line: Int64
    qc: EdgeQcText | None = Field(
        default=None,
        description="an edge's receipt into quarantine: pending until a person releases or "
        "rejects the carton (POST .../events/{event_id}/release|reject); else absent",
    )


class EdgeQcIn(BaseModel):
    """A QC decision on a whole carton an edge booked into quarantine."""

    model_config = ConfigDict(extra="forbid")

    location: Code | None = Field(
        default=None, description="release: the storage or receiving location it goes to"
    )
    reason: Note = Field(min_length=1, description="why it passes or fails QC")


class EdgeQcOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    event_id: Text
    site_id: SiteId
    seq: Int64
    po_id: Code
    line_no: Int64
    item: Code
    lot: Text | None
    qty: DecimalText
    uom: Text
    quarantine: Text = Field(description="the quarantine location the edge booked it into")
    verdict: Literal["released", "rejected"]
    location: Text | None = Field(description="released: where it went")
    reason: Text
    decided_by: Text
    decided_at: datetime


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    po_line: PoLineNo
    qty: ExactDecimal = Field(description="in uom; positive")
    uom: Uom | None = None
    location: Code = Field(description="where the goods are taken from")
    lot: Lot | None = None


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    po_id: Code
    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=MAX_LINES)]


class ReturnLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    po_line: Int64
    item_code: Code
    qty: DecimalText
    uom: Text
    base_qty: DecimalText
    lot: Text | None
    location: Text


class ReturnOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    return_id: Code
    po_id: Code
    site_id: SiteId
    reason: Text
    created_by: Text
    created_at: datetime
    version: Int64
    lines: list[ReturnLineOut]


class ReturnPage(BaseModel):
    returns: list[ReturnOut]
    next_after: Code | None


class InvoiceLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    po_line: PoLineNo
    qty: ExactDecimal = Field(description="in ``uom``")
    unit_price: ExactDecimal = Field(description="per ``uom``, before tax")
    tax_rate: ExactDecimal = Field(description="a fraction: 0.13 for 13 %")
    amount: ExactDecimal | None = Field(
        default=None, description="before tax; absent: qty × unit_price"
    )
    uom: Uom | None = Field(
        default=None,
        description="any unit of the item (the supplier's invoice unit); absent: the PO "
        "line's ordered unit",
    )


class InvoiceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    invoice_no: Code = Field(description="the supplier's invoice number")
    po_id: Code
    lines: Annotated[list[InvoiceLineIn], Field(min_length=1, max_length=MAX_LINES)]


class InvoiceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    po_line: Int64
    qty: DecimalText
    uom: Text | None = Field(
        default=None, description="the unit of qty and prices when not the PO line's"
    )
    base_qty: DecimalText
    unit_price: Financial[DecimalText | None] = None
    tax_rate: Financial[DecimalText | None] = None
    amount: Financial[DecimalText | None] = None
    tax_amount: Financial[DecimalText | None] = None
    po_price: Financial[DecimalText | None] = None
    price_diff: Financial[DecimalText | None] = Field(
        default=None, description="invoice price − PO price"
    )
    amount_diff: Financial[DecimalText | None] = Field(
        default=None, description="invoice amount − qty × PO price"
    )
    accepted_qty: DecimalText = Field(description="accepted on the PO line when matched (base)")
    qty_diff: DecimalText = Field(
        description="invoiced so far including this − accepted, base unit (positive: too much)"
    )
    outcome: Text = Field(
        description="ok, or the differences beyond tolerance: price, quantity, amount, "
        "tax_rate, no_po_price (comma-separated)"
    )


class InvoiceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    invoice_id: Code
    invoice_no: Code
    supplier: Code
    po_id: Code
    site_id: SiteId
    status: InvoiceStatusText
    created_by: Text
    created_at: datetime
    decided_by: Text | None
    decided_at: datetime | None
    reason: Text | None
    version: Int64
    updated_at: datetime
    amount: Financial[DecimalText | None] = None
    tax_amount: Financial[DecimalText | None] = None
    lines: list[InvoiceLineOut]


class InvoicePage(BaseModel):
    invoices: list[InvoiceOut]
    next_after: Code | None


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text, Field(min_length=1, max_length=1000)]
