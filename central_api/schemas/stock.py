"""``/stock``'s answers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from central_api.schemas.common import DecimalText


class StockBalanceOut(BaseModel):
    """What is on hand at one (site, location, item, lot), as the ledger sums it."""

    model_config = ConfigDict(from_attributes=True)

    site_id: str
    location: str
    item: str
    lot: str | None
    uom: str
    qty: DecimalText
