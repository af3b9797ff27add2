"""Customer returns' HTTP shapes (退货): the authorisation, its lines, the decisions.

No prices: the warehouse receives, restocks and scraps.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText
from central_api.schemas.receiving import Lot
from central_api.schemas.sales import MAX_LINES, Note
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text
from jxc.feed import Uom

ReturnStatusText = Literal["authorised", "received", "closed"]


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    so_line: Annotated[int, Field(ge=1, le=100_000)]
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(default=None, description="any unit of the item; absent: its base")
    lot: Lot | None = Field(default=None, description="a lot shipped on that line")


class ReturnIn(BaseModel):
    """An authorisation: which shipped goods the customer may send back, and why."""

    model_config = ConfigDict(extra="forbid")

    so_id: Code
    reason: Annotated[Note, Field(min_length=1)]
    lines: Annotated[list[ReturnLineIn], Field(min_length=1, max_length=MAX_LINES)]


class RestockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_no: Annotated[int, Field(ge=1, le=100_000)]
    location: Code = Field(description="a storage or receiving location of the site")


class ScrapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_no: Annotated[int, Field(ge=1, le=100_000)]
    reason_code: Code = Field(description="a reason code for a write-off or a return")


class CloseShortIn(BaseModel):
    """Close the lines of which nothing arrived, with zero: say why."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Note, Field(min_length=1)]


class ReturnLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line_no: Int64
    so_line: Int64
    item_code: Code
    lot: Text | None
    expiry: date | None
    qty: DecimalText = Field(description="authorised to come back")
    received_qty: DecimalText = Field(
        description="what arrived: the whole qty at central; carton by carton at an edge"
    )
    uom: Text = Field(description="the item's base unit")
    location: Text | None = Field(description="where the goods are, once received")
    disposition: Literal["pending", "restocked", "scrapped", "short"] = Field(
        description="short: closed with nothing received (close-short)"
    )
    reason_code: Text | None
    decided_by: Text | None
    decided_at: datetime | None


class ReturnOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    return_id: Code
    so_id: Code
    site_id: SiteId
    customer: Code
    status: ReturnStatusText
    reason: Text
    created_by: Text
    created_at: datetime
    received_by: Text | None
    received_at: datetime | None
    version: Int64 = Field(description="also the ETag; send it back as If-Match")
    updated_at: datetime
    lines: list[ReturnLineOut]


class ReturnPage(BaseModel):
    customer_returns: list[ReturnOut]
    next_after: Code | None
