"""``/items``'s requests and answers: the item master as an office edits and reads it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from central_api.schemas.common import DecimalText, Financial
from jxc.contract import Code, ExactDecimal, Int64, Text
from jxc.feed import Barcode, Uom

MAX_BARCODES_PER_ITEM = 1000
MAX_MONEY = Decimal(10) ** 12
"""Amounts are stored in millionths in a BIGINT; this keeps far inside its range."""


class BarcodeIn(BaseModel):
    """One barcode of the item, in a PUT body."""

    model_config = ConfigDict(extra="forbid")

    barcode: Barcode
    qty_per: ExactDecimal = Field(
        default=Decimal(1), description="units of the item one scan counts, as a string"
    )

    @field_validator("qty_per")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class ItemIn(BaseModel):
    """The whole new state of an item; the item code comes from the path."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)]
    uom: Uom
    active: bool = True
    barcodes: Annotated[list[BarcodeIn], Field(max_length=MAX_BARCODES_PER_ITEM)] | None = Field(
        default=None, description="the item's full barcode set; omit to keep it as is"
    )
    cost: ExactDecimal | None = Field(
        default=None,
        description="standard cost per unit (financial); omit to keep it as is",
    )
    price: ExactDecimal | None = Field(
        default=None,
        description="list price per unit (financial); omit to keep it as is",
    )

    @field_validator("cost", "price")
    @classmethod
    def _not_negative(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        if value is not None and abs(value) >= MAX_MONEY:
            raise ValueError(f"must be below {MAX_MONEY}")
        return value

    @field_validator("barcodes")
    @classmethod
    def _each_once(cls, value: list[BarcodeIn] | None) -> list[BarcodeIn] | None:
        seen: set[str] = set()
        for index, entry in enumerate(value or ()):
            if entry.barcode in seen:
                raise ValueError(f"barcodes[{index}]: barcode {entry.barcode!r} is listed twice")
            seen.add(entry.barcode)
        return value


class BarcodeOut(BaseModel):
    """One barcode of an item as central stores it."""

    model_config = ConfigDict(from_attributes=True)

    barcode: Barcode
    qty_per: DecimalText
    version: Int64 = Field(description="feed version of this barcode's last change")
    updated_at: datetime


class ItemOut(BaseModel):
    """An item with its barcodes, as central stores it."""

    model_config = ConfigDict(from_attributes=True)

    item_code: Code
    name: Annotated[Text, Field(max_length=200)]
    uom: Uom
    active: bool
    version: Int64 = Field(description="feed version of the item's own last change")
    updated_at: datetime
    barcodes: list[BarcodeOut]
    cost: Financial[DecimalText | None] = Field(default=None, description="cost per unit")
    price: Financial[DecimalText | None] = Field(default=None, description="price per unit")


class ItemPage(BaseModel):
    """One page of the item master, in item_code order."""

    model_config = ConfigDict(from_attributes=True)

    items: list[ItemOut]
    next_after: Code | None = Field(
        description="pass as ?after= for the next page; null when this page is the last"
    )
