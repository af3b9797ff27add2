"""``/periods`` and ``/lots/recall``: period close and the recall view."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText
from jxc.contract import Text


class SiteValueOut(BaseModel):
    """A site's stock value at the month's end: as closed, and (one month read) now."""

    model_config = ConfigDict(from_attributes=True)

    site_id: str
    value: DecimalText
    items: int
    value_now: DecimalText | None = None


class PeriodOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    period: str
    status: str
    closed_by: str
    closed_at: datetime
    reopened_by: str | None
    reopened_at: datetime | None
    reason: str | None
    version: int
    values: list[SiteValueOut] = Field(
        description="per site; empty for a reader without the financial field group"
    )


class PeriodsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    closed_through: str | None = Field(description="the last closed month; null: none")
    next_to_close: str = Field(description="the month a close would close now")
    periods: list[PeriodOut]


class ReopenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[Text, Field(min_length=1, max_length=1000)]


class HoldingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: str
    location: str
    qty: DecimalText
    uom: str


class FlowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: str
    doc_type: str
    doc_id: str
    partner_code: str
    partner_name: str
    qty: DecimalText
    uom: str
    first_at: datetime
    last_at: datetime


class InTransitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    transfer_id: str
    from_site: str
    to_site: str
    qty: DecimalText


class SiteMovementsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: str
    kind: str
    qty: DecimalText
    uom: str
    events: int


class RecallOut(BaseModel):
    """Where a lot is, where it came from and who received it (the caller's sites)."""

    model_config = ConfigDict(from_attributes=True)

    item: str
    item_name: str
    lot: str
    expiry: date | None
    on_hand: DecimalText
    holdings: list[HoldingOut]
    in_transit: list[InTransitOut]
    suppliers: list[FlowOut]
    customers: list[FlowOut]
    customers_hidden: bool = Field(
        description="the lot went to customers the caller's roles may not see"
    )
    counters: list[FlowOut]
    movements: list[SiteMovementsOut]
