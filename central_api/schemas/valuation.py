"""``/valuation``'s answers: all financial, so only roles with the financial group see them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from central_api.schemas.common import DecimalText
from jxc.contract import Code, SiteId


class ValuationOut(BaseModel):
    """What the stock of one (site, item) is worth, in the item's base unit."""

    site_id: SiteId
    item: Code
    method: str
    qty: DecimalText
    value: DecimalText
    average_cost: DecimalText | None
    last_cost: DecimalText
    last_movement_at: datetime


class ValuationEntryOut(BaseModel):
    """One movement of a (site, item) and what it came to (see ``docs/valuation.md``)."""

    event_id: str
    occurred_at: datetime
    kind: str
    qty: DecimalText
    in_cost: DecimalText | None
    cost_source: str
    in_value: DecimalText
    cogs: DecimalText
    variance: DecimalText
    shortfall: DecimalText
    qty_after: DecimalText
    value_after: DecimalText
    last_cost_after: DecimalText
