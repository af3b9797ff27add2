"""Sales's HTTP shapes: price lists, sales orders with their reservations, and
available-to-promise.

Prices, tax rates and amounts are ``Financial[...]``: absent from every answer to a role
without the financial field group (a warehouse clerk's view of an order has no price).
Quantities in requests are exact decimals as strings (a JSON number is refused).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText, Financial
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text
from jxc.feed import Uom

SoStatusText = Literal["draft", "confirmed", "closed", "cancelled"]
Note = Annotated[Text, Field(max_length=1000)]
Name = Annotated[Text, Field(min_length=1, max_length=200)]
MAX_LINES = 500
ShelfDays = Annotated[int, Field(ge=0, le=36500)]


class PriceLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    uom: Uom | None = Field(default=None, description="absent: the item's base unit")
    price: ExactDecimal = Field(description="per unit, before tax (financial)")
    valid_from: date | None = None
    valid_to: date | None = Field(default=None, description="the last day it is valid")


class PriceListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    lines: Annotated[list[PriceLineIn], Field(max_length=MAX_LINES)] = []


class PriceLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    item_code: Code
    uom: Text
    price: Financial[DecimalText | None] = None
    valid_from: date | None
    valid_to: date | None


class PriceListOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: Code
    name: Text
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[PriceLineOut]


class PriceListPage(BaseModel):
    price_lists: list[PriceListOut]
    next_after: Code | None


class SoLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(default=None, description="any unit of the item; absent: its base")
    unit_price: ExactDecimal | None = Field(
        default=None,
        description="per ordered unit, before tax (financial); absent: the customer's "
        "price list's price on the day the order is written",
    )
    tax_rate: ExactDecimal | None = Field(
        default=None, description="a fraction: 0.13 for 13 % (financial); absent: 0"
    )
    requested_date: date | None = None


class SalesOrderIn(BaseModel):
    """A new order (a draft), or a draft's whole new content (``PUT``)."""

    model_config = ConfigDict(extra="forbid")

    customer: Code = Field(description="a partner that is a customer")
    site_id: SiteId = Field(description="the site that ships the goods")
    note: Note = ""
    min_remaining_days: ShelfDays | None = Field(
        default=None,
        description="the customer's minimum remaining shelf life in days; the item's "
        "own minimum applies too (the larger wins)",
    )
    lines: Annotated[list[SoLineIn], Field(min_length=1, max_length=MAX_LINES)]


class ReservationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lot: Text = Field(description='"" for stock without a lot')
    expiry: date | None
    qty: DecimalText = Field(description="in the item's base unit")


class SoLineOut(BaseModel):
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
    gross_amount: Financial[DecimalText | None] = None
    requested_date: date | None
    shipped_qty: DecimalText
    reserved_qty: DecimalText
    backorder_qty: DecimalText = Field(
        description="wanted but neither reserved nor shipped (only while confirmed)"
    )
    reservations: list[ReservationOut]


class SalesOrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    so_id: Code
    customer: Code
    site_id: SiteId
    status: SoStatusText
    note: Text
    min_remaining_days: Int64 | None
    created_by: Text
    created_at: datetime
    confirmed_by: Text | None
    confirmed_at: datetime | None
    ended_at: datetime | None = Field(description="when it was closed or cancelled")
    reason: Text | None
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    amount: Financial[DecimalText | None] = None
    gross_amount: Financial[DecimalText | None] = None
    lines: list[SoLineOut]
    channel: Text | None = Field(
        default=None,
        description="the online shop that placed it (POST /integrations/orders); null: made "
        "at central",
    )
    external_id: Text | None = Field(default=None, description="the shop's own order id")


class SalesOrderPage(BaseModel):
    sales_orders: list[SalesOrderOut]
    next_after: Code | None


class LotAvailableOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    lot: Text
    expiry: date | None
    on_hand: DecimalText = Field(description="sellable on hand")
    unsellable: DecimalText = Field(description="in quarantine, damaged or in-transit locations")
    reserved: DecimalText
    available: DecimalText


class AvailableOut(BaseModel):
    """Available-to-promise of one item at one site, in the item's base unit, by lot in
    FEFO order (expiry is not judged here: a customer's minimum shelf life is the order's)."""

    site_id: SiteId
    item: Code
    uom: Text
    on_hand: DecimalText
    unsellable: DecimalText
    reserved: DecimalText
    available: DecimalText
    lots: list[LotAvailableOut]
