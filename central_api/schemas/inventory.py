"""HTTP shapes of inventory control: other receipts and issues, write-offs, transfers, counts.

Values at cost (a write-off's ``value``, a line's ``unit_cost``) are ``Financial[...]``:
absent for a role without the financial group, so a warehouse clerk sees the documents
without money. A count line has two shapes: the reviewer's (expected, system and counted
quantities, the variance) and the counter's *sheet*, which has no expected quantity at all
(blind counting).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText, Financial
from central_api.schemas.receiving import Lot, Note
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text
from jxc.feed import Uom

MAX_LINES = 500
StockDocStatusText = Literal["posted", "pending", "rejected"]
TransferStatusText = Literal["draft", "approved", "shipped", "received", "cancelled"]
CountStatusText = Literal["counting", "review", "posted", "cancelled"]
LineNo = Annotated[Int64, Field(ge=1)]


# --- other receipts and issues, write-offs ---------------------------------------------------


class StockLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(default=None, description="any unit of the item; absent: base unit")
    location: Code = Field(description="an active location of the site")
    lot: Lot | None = None
    expiry: date | None = Field(default=None, description="receipts only: the lot's expiry")


class StockDocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    reason_code: Code = Field(description="a reason code whose applies_to names this movement")
    note: Note = ""
    lines: Annotated[list[StockLineIn], Field(min_length=1, max_length=MAX_LINES)]


class StockLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    item_code: Code
    location: Text
    qty: DecimalText
    uom: Text
    base_qty: DecimalText
    base_uom: Text
    lot: Text | None
    expiry: date | None
    unit_cost: Financial[DecimalText | None] = None


class StockDocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    doc_id: Code
    kind: Literal["other_receipt", "other_issue", "write_off"]
    site_id: SiteId
    reason_code: Code
    status: StockDocStatusText
    note: Text
    value: Financial[DecimalText | None] = Field(
        default=None, description="at cost; a write-off above the threshold waits for approval"
    )
    created_by: Text
    created_at: datetime
    decided_by: Text | None
    decided_at: datetime | None
    decision_note: Text | None
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[StockLineOut]
    edge_ref: Text | None = Field(
        default=None,
        description="'<site> <number>' of a write-off booked at the site's edge: its stock"
        " left when it was recorded; approving it books nothing again",
    )


class StockDocumentPage(BaseModel):
    documents: list[StockDocumentOut]
    next_after: Code | None


class DecideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Note | None = None


# --- transfers ---------------------------------------------------------------------------------


class TransferLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    qty: ExactDecimal = Field(description="in uom; positive")
    uom: Uom | None = None


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_site: SiteId
    to_site: SiteId
    note: Note = ""
    lines: Annotated[list[TransferLineIn], Field(min_length=1, max_length=MAX_LINES)]


class TransferLotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lot: Text | None
    expiry: date | None
    shipped_qty: DecimalText
    received_qty: DecimalText
    in_transit: DecimalText = Field(description="shipped − received")


class TransferLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    item_code: Code
    qty: DecimalText
    uom: Text
    base_qty: DecimalText
    base_uom: Text
    shipped_qty: DecimalText
    received_qty: DecimalText
    in_transit: DecimalText
    lots: list[TransferLotOut]


class TransferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    transfer_id: Code
    from_site: SiteId
    to_site: SiteId
    status: TransferStatusText
    note: Text
    created_by: Text
    created_at: datetime
    approved_by: Text | None
    approved_at: datetime | None
    shipped_at: datetime | None
    received_at: datetime | None
    reason: Text | None
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[TransferLineOut]


class TransferPage(BaseModel):
    transfers: list[TransferOut]
    next_after: Code | None


class PickIn(BaseModel):
    """What left (ship) or arrived (receive) for one transfer line: where, which lot, how much."""

    model_config = ConfigDict(extra="forbid")

    line_no: LineNo
    location: Code
    lot: Lot | None = None
    qty: ExactDecimal = Field(description="in the line's base unit; positive")


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: Annotated[list[PickIn], Field(min_length=1, max_length=MAX_LINES)]


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Note = ""


class TransferExceptionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    exception_id: Int64
    transfer_id: Code
    line_no: Int64
    kind: Literal["short", "over", "wrong_lot"]
    item_code: Code
    lot: Text | None
    shipped_qty: DecimalText
    received_qty: DecimalText
    status: Literal["open", "resolved"]
    raised_at: datetime
    resolved_by: Text | None
    resolved_at: datetime | None
    resolution: Text | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Annotated[Text, Field(min_length=1, max_length=1000)]


class InTransitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    transfer_id: Code
    from_site: SiteId
    to_site: SiteId
    line_no: Int64
    item_code: Code
    lot: Text | None
    qty: DecimalText
    uom: Text


# --- stock counts --------------------------------------------------------------------------------


class CountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    location_from: Code | None = Field(
        default=None, description="the first location code counted (absent: the whole site)"
    )
    location_to: Code | None = Field(default=None, description="the last location code counted")
    note: Note = ""


class CountLineOut(BaseModel):
    """A line as its reviewer sees it."""

    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    location: Text
    item_code: Code
    lot: Text | None
    uom: Text
    expected_qty: DecimalText = Field(description="on hand at the snapshot")
    system_qty: DecimalText | None = Field(description="on hand when counted (snapshot + moves)")
    counted_qty: DecimalText | None
    first_qty: DecimalText | None = Field(description="the first count, when recounted")
    recount: bool = Field(description="a recount is asked for")
    variance: DecimalText | None = Field(description="counted − system: what is booked")
    counted_by: Text | None
    counted_at: datetime | None


class CountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    count_id: Code
    site_id: SiteId
    location_from: Text | None
    location_to: Text | None
    status: CountStatusText
    note: Text
    snapshot_at: datetime
    created_by: Text
    created_at: datetime
    approved_by: Text | None
    approved_at: datetime | None
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[CountLineOut]


class CountPage(BaseModel):
    counts: list[CountOut]
    next_after: Code | None


class SheetLineOut(BaseModel):
    """A line as its counter sees it: where and what, never how many are expected."""

    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    location: Text
    item_code: Code
    lot: Text | None
    uom: Text
    counted_qty: DecimalText | None
    recount: bool


class SheetOut(BaseModel):
    count_id: Code
    site_id: SiteId
    status: CountStatusText
    version: Int64
    lines: list[SheetLineOut]


class CountEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    location: Code
    item_code: Code
    lot: Lot | None = None
    qty: ExactDecimal = Field(description="counted, in the item's base unit; zero allowed")


class CountEntriesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: Annotated[list[CountEntryIn], Field(min_length=1, max_length=5000)]


class AccuracyOut(BaseModel):
    site_id: SiteId
    sessions: Int64
    lines_counted: Int64
    lines_right: Int64
    accuracy: DecimalText | None = Field(description="lines right / lines counted, 0..1")
    value_counted: Financial[DecimalText | None] = Field(
        default=None, description="the counted quantities at each snapshot's cost"
    )
    value_right: Financial[DecimalText | None] = Field(
        default=None, description="the same, of the lines counted right"
    )
    value_accuracy: Financial[DecimalText | None] = Field(
        default=None, description="value counted right / value counted, 0..1"
    )
