"""HTTP shapes of replenishment (planning parameters, suggestions) and the alerts inbox.

Nothing here is at cost: quantities only, so no field is ``Financial``; the draft PO a
suggestion becomes is answered in the purchase order's own shape (prices hidden there).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText
from central_api.schemas.people import Username
from jxc.contract import Code, ExactDecimal, Int64, SiteId, Text

AlertStatusText = Literal["open", "cleared", "resolved"]
MAX_ROWS = 500


class ParamsRowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code
    safety_stock: ExactDecimal = Field(description="base unit, ≥ 0", examples=["20"])
    reorder_point: ExactDecimal = Field(description="base unit, ≥ safety_stock", examples=["50"])
    reorder_qty: ExactDecimal = Field(
        description="base unit, the least one orders", examples=["100"]
    )
    lead_time_days: Annotated[int, Field(ge=0, le=3650)] | None = Field(
        default=None, description="absent: the supplier's lead time, else 7 days"
    )
    supplier_code: Code | None = Field(
        default=None, description="absent: the supplier of the item's latest PO"
    )


class ParamsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    rows: Annotated[list[ParamsRowIn], Field(min_length=1, max_length=MAX_ROWS)]


class ParamsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    item_code: Code
    safety_stock: DecimalText
    reorder_point: DecimalText
    reorder_qty: DecimalText
    lead_time_days: Int64 | None
    supplier_code: Text | None
    updated_at: datetime


class ParamsPage(BaseModel):
    params: list[ParamsOut]
    next_after: Text | None


class SuggestionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_code: Code
    item_name: Text
    uom: Text
    supplier_source: Literal["set", "last_po", "none"]
    lead_time_days: Int64
    on_hand: DecimalText
    on_order: DecimalText
    position: DecimalText = Field(description="on hand + still expected on open POs")
    safety_stock: DecimalText
    reorder_point: DecimalText
    reorder_qty: DecimalText
    lead_time_demand: DecimalText = Field(description="forecast demand over the lead time")
    target: DecimalText = Field(description="max(reorder point, safety stock + that demand)")
    qty: DecimalText = Field(description="max(reorder qty, target − position), whole units")
    seasonal: bool = Field(description="the history showed a weekly pattern")
    daily_forecast: DecimalText


class SupplierGroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    supplier_code: Text = Field(description='"" for items with no supplier known')
    supplier_name: Text
    lines: list[SuggestionOut]


class SuggestionsOut(BaseModel):
    site_id: SiteId
    on: date
    suppliers: list[SupplierGroupOut]


class DraftPoIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    supplier: Code
    on: date | None = Field(default=None, description="the day to judge by; absent: today")


class ExpiryDaysIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: Annotated[str, Field(min_length=1, max_length=64, examples=["30,60,90"])]


class ExpiryDaysOut(BaseModel):
    category_code: Code
    days: list[Int64]


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    alert_id: Int64
    kind: Text
    source: Literal[
        "stock",
        "purchase_exception",
        "transfer_exception",
        "period",
        "ops",
        "edge_pick",
        "edge_return",
    ]
    source_id: Text
    site_id: SiteId
    item_code: Text
    location: Text
    lot: Text
    qty: DecimalText | None
    threshold: DecimalText | None
    detail: Text
    since_at: datetime | None
    raised_at: datetime
    cleared_at: datetime | None
    status: AlertStatusText
    owner: Text | None
    resolution: Text | None
    resolved_by: Text | None
    resolved_at: datetime | None
    version: Int64


class AlertPage(BaseModel):
    alerts: list[AlertOut]
    next_after: Int64 | None


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner: Username | None = Field(description="the user who takes it; null: nobody")


class AlertResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: Annotated[Text, Field(min_length=1, max_length=1000)]


class EvaluateExpiryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId | None = Field(default=None, description="absent: every site")
    on: date | None = Field(default=None, description="the day to judge by; absent: today")


class ExpiryOutcomeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    today: date
    lots: Int64
    raised: Int64
    cleared: Int64


class NegativeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    location: Text
    item_code: Text
    lot: Text
    qty: DecimalText
    uom: Text
    since: datetime | None
    alert_id: Int64 | None
