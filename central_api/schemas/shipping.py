"""Shipping's HTTP shapes: an order's pick list, shipments and their lines.

Neither carries a price: a warehouse clerk picks, ships and prints the delivery note.
Quantities in requests are exact decimals as strings; in answers they are in the item's
base unit (``uom``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText
from central_api.schemas.receiving import Lot
from central_api.schemas.sales import MAX_LINES, Note, SoStatusText
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text
from jxc.feed import Uom

TrackingNo = Annotated[Text, Field(min_length=1, max_length=64)]


class PickPlaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    location: Text
    on_hand: DecimalText = Field(description="of the lot at this location, base unit")


class PickLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    so_line: Int64
    item_code: Code
    lot: Text = Field(description='"" for stock without a lot')
    expiry: date | None
    qty: DecimalText = Field(description="reserved, to pick, in uom (the base unit)")
    uom: Text
    places: list[PickPlaceOut] = Field(description="sellable locations holding the lot")


class PickListOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    so_id: Code
    site_id: SiteId
    customer: Code
    status: SoStatusText
    version: Int64 = Field(description="the order's version (its ETag)")
    lines: list[PickLineOut]


class ShipmentLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    so_line: Annotated[int, Field(ge=1, le=100_000)]
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(default=None, description="any unit of the item; absent: its base")
    lot: Lot | None = Field(
        default=None, description="a lot reserved for the line; absent: its lots, FEFO"
    )
    location: Code | None = Field(
        default=None, description="where to take it; absent: the sellable ones holding it"
    )


class ShipmentIn(BaseModel):
    """Reserved goods of a confirmed order, shipped and booked at once."""

    model_config = ConfigDict(extra="forbid")

    so_id: Code
    tracking_no: TrackingNo | None = None
    note: Note = ""
    lines: Annotated[list[ShipmentLineIn], Field(min_length=1, max_length=MAX_LINES)]


class TrackingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_no: TrackingNo


class ShipmentLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    so_line: Int64
    item_code: Code
    lot: Text | None
    expiry: date | None
    location: Text
    qty: DecimalText
    uom: Text = Field(description="the item's base unit")


class ShipmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    shipment_id: Code
    so_id: Code
    site_id: SiteId
    customer: Code
    tracking_no: Text | None
    sscc: Annotated[str, Field(pattern=r"^[0-9]{18}$")] | None = Field(
        default=None, description="the logistic unit's SSCC-18, for a unit packed at an edge"
    )
    note: Text
    created_by: Text
    created_at: datetime
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[ShipmentLineOut]


class ShipmentPage(BaseModel):
    shipments: list[ShipmentOut]
    next_after: Code | None
