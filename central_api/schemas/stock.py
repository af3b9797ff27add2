"""``/stock``'s answers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.common import DecimalText
from jxc.contract import Code, SiteId, Text


class StockBalanceOut(BaseModel):
    """What is on hand at one (site, location, item, lot), as the ledger sums it."""

    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    location: Code
    item: Code
    lot: Annotated[Text, Field(max_length=40)] | None
    uom: Annotated[Text, Field(max_length=16)]
    qty: DecimalText
