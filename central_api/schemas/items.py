"""``/items``'s requests and answers: the item master as an office edits and reads it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from central_api.schemas.common import DecimalText, Financial
from jxc.contract import Code, ExactDecimal, Int64, Text
from jxc.feed import Barcode, Uom, ValuationMethod

BarcodeKindName = Literal["ean8", "upca", "ean13", "gtin14", "internal"]
MAX_UNITS_PER_ITEM = 20
MAX_DAYS = 36_500
Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]

MAX_BARCODES_PER_ITEM = 1000
MAX_MONEY = Decimal(10) ** 12
"""Amounts are stored in millionths in a BIGINT; this keeps far inside its range."""


class BarcodeIn(BaseModel):
    """One barcode of the item, in a PUT body."""

    model_config = ConfigDict(extra="forbid")

    barcode: Barcode
    qty_per: ExactDecimal | None = Field(
        default=None,
        description="base units one scan counts, as a string; omit to take it from uom "
        "(1 without a uom)",
    )
    uom: Uom | None = Field(
        default=None, description="the pack unit one scan means: the base unit or one of units"
    )
    kind: BarcodeKindName | None = Field(
        default=None,
        description="omit to let the digits decide (8/12/13/14 digits: a GTIN, its check "
        "digit verified); 'internal' for a code of your own",
    )

    @field_validator("qty_per")
    @classmethod
    def _positive(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value <= 0:
            raise ValueError("must be positive")
        return value


class UnitIn(BaseModel):
    """A unit of the item besides its base unit: ``factor`` of ``of`` (default: base)."""

    model_config = ConfigDict(extra="forbid")

    uom: Uom
    factor: ExactDecimal = Field(description="how many of `of` make one of this unit")
    of: Uom | None = Field(default=None, description="another unit of the item; omit: base")

    @field_validator("factor")
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        if value <= 0:
            raise ValueError("must be positive")
        return value


class ItemIn(BaseModel):
    """The whole new state of an item; the item code comes from the path.

    Omitted attributes take their defaults, except ``barcodes``, ``units``,
    ``valuation`` and the prices, which are kept as they are when omitted (a role that
    cannot see prices cannot send them back).
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1, max_length=200)] = Field(
        description="the name in Chinese (zh-CN), as labels and screens show it"
    )
    name_en: Annotated[Text, Field(max_length=200)] = ""
    uom: Uom = Field(description="the base unit: stock is counted in it")
    active: bool = True
    category: Code | None = None
    lot_tracked: bool = False
    expiry_tracked: bool = False
    serial_tracked: bool = False
    shelf_life_days: Days | None = None
    min_remaining_days: Days | None = Field(
        default=None, description="the least shelf life left that receiving accepts"
    )
    unit_weight: ExactDecimal | None = Field(
        default=None, description="expected kg per base unit, for weight-checked receiving"
    )
    weight_tolerance: ExactDecimal | None = Field(
        default=None, description="accepted deviation from the expected weight, percent"
    )
    valuation: ValuationMethod | None = Field(
        default=None, description="moving_average or fifo; omit to keep (new: moving_average)"
    )
    units: Annotated[list[UnitIn], Field(max_length=MAX_UNITS_PER_ITEM)] | None = Field(
        default=None, description="the item's other units; omit to keep them as they are"
    )
    barcodes: Annotated[list[BarcodeIn], Field(max_length=MAX_BARCODES_PER_ITEM)] | None = Field(
        default=None, description="the item's full barcode set; omit to keep it as is"
    )
    cost: ExactDecimal | None = Field(
        default=None,
        description="standard cost per unit (financial); omit to keep it as is",
    )
    price: ExactDecimal | None = Field(
        default=None,
        description="sale price per unit (financial); omit to keep it as is",
    )
    purchase_price: ExactDecimal | None = Field(
        default=None,
        description="purchase price per unit (financial); omit to keep it as is",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.min_remaining_days is not None and (
            self.shelf_life_days is None or self.min_remaining_days > self.shelf_life_days
        ):
            raise ValueError("min_remaining_days: needs a shelf_life_days at least as long")
        if self.unit_weight is not None and self.unit_weight <= 0:
            raise ValueError("unit_weight: must be positive")
        if self.weight_tolerance is not None and not 0 <= self.weight_tolerance <= 100:
            raise ValueError("weight_tolerance: must be a percentage within 0..100")
        if self.weight_tolerance is not None and self.unit_weight is None:
            raise ValueError("weight_tolerance: needs a unit_weight")
        return self

    def feed_fields(self) -> dict[str, Any]:
        """The fields the change feed carries (ItemData's), without the code."""
        return self.model_dump(
            include={
                "name",
                "name_en",
                "uom",
                "active",
                "category",
                "lot_tracked",
                "expiry_tracked",
                "serial_tracked",
                "shelf_life_days",
                "min_remaining_days",
                "unit_weight",
                "weight_tolerance",
            }
        )

    def financial(self) -> dict[str, Decimal | None]:
        return {"cost": self.cost, "price": self.price, "purchase_price": self.purchase_price}

    @field_validator("cost", "price", "purchase_price")
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
    uom: Uom | None = None
    kind: BarcodeKindName
    version: Int64 = Field(description="feed version of this barcode's last change")
    updated_at: datetime


class UnitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    uom: Uom
    factor: DecimalText = Field(description="base units in one of this unit")
    version: Int64
    updated_at: datetime


class ItemOut(BaseModel):
    """An item with its barcodes, as central stores it."""

    model_config = ConfigDict(from_attributes=True)

    item_code: Code
    name: Annotated[Text, Field(max_length=200)]
    name_en: Annotated[Text, Field(max_length=200)] = ""
    uom: Uom
    active: bool
    archived: bool = False
    category: Code | None = None
    lot_tracked: bool = False
    expiry_tracked: bool = False
    serial_tracked: bool = False
    shelf_life_days: Int64 | None = None
    min_remaining_days: Int64 | None = None
    unit_weight: DecimalText | None = None
    weight_tolerance: DecimalText | None = None
    valuation: ValuationMethod = "moving_average"
    version: Int64 = Field(description="feed version of the item's own last change")
    updated_at: datetime
    units: list[UnitOut] = Field(default_factory=list)
    barcodes: list[BarcodeOut]
    cost: Financial[DecimalText | None] = Field(default=None, description="cost per unit")
    price: Financial[DecimalText | None] = Field(default=None, description="price per unit")
    purchase_price: Financial[DecimalText | None] = Field(
        default=None, description="purchase price per unit"
    )


class ItemPage(BaseModel):
    """One page of the item master, in item_code order."""

    model_config = ConfigDict(from_attributes=True)

    items: list[ItemOut]
    next_after: Code | None = Field(
        description="pass as ?after= for the next page; null when this page is the last"
    )


class ItemCreate(ItemIn):
    """A new item: with ``item_code``, or without to have its category's rule make one."""

    item_code: Code | None = Field(
        default=None, description="omit to take the next code of the category's coding rule"
    )


class ItemRemoved(BaseModel):
    """What DELETE did: ``deleted`` (nothing referenced it) or ``archived``."""

    item_code: Code
    outcome: Literal["deleted", "archived"]
    item: ItemOut | None = None


class LevelsIn(BaseModel):
    """An item's stock levels at one site, in its base unit."""

    model_config = ConfigDict(extra="forbid")

    safety_stock: ExactDecimal = Decimal(0)
    reorder_point: ExactDecimal = Decimal(0)
    reorder_qty: ExactDecimal = Decimal(0)


class LevelsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    site_id: Code
    item_code: Code
    safety_stock: DecimalText
    reorder_point: DecimalText
    reorder_qty: DecimalText
    version: Int64
    updated_at: datetime


class LevelsPage(BaseModel):
    levels: list[LevelsOut]
    next_after: Code | None
