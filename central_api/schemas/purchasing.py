"""Purchasing's HTTP shapes: requisitions, purchase orders, receiving exceptions.

Prices, tax rates and amounts are ``Financial[...]``: absent from every answer to a role
without the financial field group (a warehouse clerk's view of a PO has no price).
Quantities in requests are exact decimals as strings (a JSON number is refused).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText, Financial
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text
from jxc.feed import Uom

PoStatusText = Literal[
    "draft", "approved", "sent", "partly_received", "received", "closed", "cancelled"
]
ReqStatusText = Literal["draft", "submitted", "approved", "rejected", "ordered", "cancelled"]
ExceptionStatus = Literal["open", "resolved"]
Note = Annotated[Text, Field(max_length=1000)]
MAX_LINES = 500


class PoLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(
        default=None, description="any unit of the item; absent: its base unit", examples=["箱"]
    )
    unit_price: ExactDecimal | None = Field(
        default=None, description="per ordered unit, before tax (financial)"
    )
    tax_rate: ExactDecimal | None = Field(
        default=None, description="a fraction: 0.13 for 13 % (financial)"
    )
    expected_date: date | None = None
    over_tolerance: ExactDecimal = Field(
        default=Decimal(0), description="percent more that may be received without exception"
    )
    under_tolerance: ExactDecimal = Field(
        default=Decimal(0), description="percent less that still completes the line"
    )


class PurchaseOrderIn(BaseModel):
    """A new PO (a draft), or a draft's whole new content (``PUT``)."""

    model_config = ConfigDict(extra="forbid")

    supplier: Code = Field(description="a partner that is a supplier")
    site_id: SiteId = Field(description="the site that receives the goods")
    note: Note = ""
    lines: Annotated[list[PoLineIn], Field(min_length=1, max_length=MAX_LINES)]


class PoLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    item_code: Code
    qty: DecimalText
    uom: Text
    base_qty: DecimalText = Field(description="qty in the item's base unit")
    base_uom: Text
    unit_price: Financial[DecimalText | None] = None
    tax_rate: Financial[DecimalText | None] = None
    amount: Financial[DecimalText | None] = None
    expected_date: date | None
    over_tolerance: DecimalText
    under_tolerance: DecimalText
    received_qty: DecimalText = Field(description="received so far, in the base unit")
    accepted_qty: DecimalText = Field(description="of it in stock after QC, net of returns")
    quarantined_qty: DecimalText = Field(description="of it held in quarantine")
    returned_qty: DecimalText = Field(description="returned to the supplier")
    invoiced_qty: DecimalText = Field(description="on matched or approved supplier invoices")
    open_qty: DecimalText = Field(description="still expected, in the base unit")
    req_id: Text | None
    req_line: Int64 | None


class PurchaseOrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    po_id: Code
    supplier: Code
    site_id: SiteId
    status: PoStatusText
    note: Text
    created_by: Text
    created_at: datetime
    approved_by: Text | None
    approved_at: datetime | None
    sent_at: datetime | None
    ended_at: datetime | None = Field(description="when it was closed or cancelled")
    reason: Text | None
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    amount: Financial[DecimalText | None] = None
    lines: list[PoLineOut]


class PurchaseOrderPage(BaseModel):
    purchase_orders: list[PurchaseOrderOut]
    next_after: Code | None


class CommandIn(BaseModel):
    """An optional reason for a command (a cancel, a close, a rejection)."""

    model_config = ConfigDict(extra="forbid")

    reason: Note | None = None


class ReqLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    qty: ExactDecimal
    uom: Uom | None = None
    supplier: Code | None = Field(default=None, description="needed before converting")
    expected_date: date | None = None
    note: Note = ""


class RequisitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    note: Note = ""
    lines: Annotated[list[ReqLineIn], Field(min_length=1, max_length=MAX_LINES)]


class ReqLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    item_code: Code
    qty: DecimalText
    uom: Text
    base_qty: DecimalText
    supplier: Code | None
    expected_date: date | None
    note: Text
    po_id: Text | None
    po_line: Int64 | None


class RequisitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    req_id: Code
    site_id: SiteId
    status: ReqStatusText
    note: Text
    created_by: Text
    created_at: datetime
    decided_by: Text | None
    decided_at: datetime | None
    reason: Text | None
    version: Int64
    updated_at: datetime
    lines: list[ReqLineOut]


class RequisitionPage(BaseModel):
    requisitions: list[RequisitionOut]
    next_after: Code | None


class ConvertIn(BaseModel):
    """Approved requisitions to turn into draft POs, one per supplier and site."""

    model_config = ConfigDict(extra="forbid")

    requisition_ids: Annotated[list[Code], Field(min_length=1, max_length=100)]


class ExceptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    exception_id: Int64
    kind: Text = Field(
        description="over_receipt, unknown_line, wrong_site, wrong_item, unknown_unit, po_not_open"
    )
    site_id: SiteId
    po_id: Text | None
    line_no: Int64 | None
    event_id: Text | None
    qty: DecimalText | None
    detail: Text
    status: ExceptionStatus
    raised_at: datetime
    resolved_by: Text | None
    resolved_at: datetime | None
    resolution: Text | None


class ExceptionPage(BaseModel):
    exceptions: list[ExceptionOut]
    next_after: Int64 | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Annotated[Note, Field(min_length=1)] = Field(
        description="what was decided: returned to the supplier, accepted as extra..."
    )
