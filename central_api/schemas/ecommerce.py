"""The body an online shop sends to place an order, and central's answer
(``POST /api/v1/integrations/orders``, docs/integrations.md "Inbound orders")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from central_api.schemas.sales import MAX_LINES, Note, SalesOrderOut, ShelfDays
from jxc.contract import Code, ExactDecimal, SiteId, Text
from jxc.feed import Uom

Channel = Annotated[
    Text,
    Field(min_length=1, max_length=64, description="the shop or channel, e.g. tmall-flagship"),
]
ExternalId = Annotated[
    Text, Field(min_length=1, max_length=128, description="the shop's own order id")
]
Barcode = Annotated[Text, Field(min_length=1, max_length=64)]


class ShopLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_code: Code | None = Field(default=None, description="the item, or give barcode")
    barcode: Barcode | None = Field(
        default=None,
        description="a barcode of the item (a GTIN in any spelling: 12, 13 or 14 digits); "
        "its pack unit is the line's unit unless uom is given",
    )
    qty: ExactDecimal = Field(description="in uom; positive", examples=["2"])
    uom: Uom | None = Field(
        default=None, description="any unit of the item; absent: the barcode's, else the base"
    )
    unit_price: ExactDecimal = Field(description="the shop's price per unit, before tax")
    tax_rate: ExactDecimal | None = Field(default=None, description="0.13 for 13 %; absent: 0")


class ShopOrderIn(BaseModel):
    """One order of the shop; sent again (same content) it answers the same sales order."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel
    external_id: ExternalId
    customer: Code = Field(description="an existing customer's partner code")
    site_id: SiteId = Field(description="the site that ships the goods")
    note: Note = ""
    min_remaining_days: ShelfDays | None = None
    confirm: bool = Field(
        default=False,
        description="confirm at once (credit check, FEFO reservation); a refused confirm "
        "keeps the draft and says why in confirm_refused",
    )
    lines: Annotated[list[ShopLineIn], Field(min_length=1, max_length=MAX_LINES)]


class ShopOrderOut(BaseModel):
    channel: Channel
    external_id: ExternalId
    sales_order: SalesOrderOut
    confirm_refused: Text | None = Field(
        default=None, description="why the confirm asked for was refused (the order is a draft)"
    )


class RotateChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: int | None = Field(
        default=None,
        ge=0,
        le=7 * 86400,
        description="how long the old secret is still accepted, in seconds (0: not at "
        "all, for a leaked one); absent: central's setting shop_secret_overlap_s (a day)",
    )


class ChannelOut(BaseModel):
    """A channel that signs its orders; never its secrets."""

    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    source: Literal["central", "setting"] = Field(
        description="central: rotated here; setting: only in central's shop_secrets"
    )
    version: int = Field(description="rotations at central (0: none)")
    previous_until: datetime | None = Field(
        description="until when the secret it replaced is still accepted (null: it is not)"
    )
    changed_by: Text | None
    changed_at: datetime | None


class ChannelWithSecret(ChannelOut):
    secret: Text | None = Field(
        default=None,
        description="the new secret, in the answer to the rotation only (null on a replay "
        "of its Idempotency-Key)",
    )
