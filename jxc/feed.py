"""The change feed (central → edge): master data a site needs to work offline.

``GET /api/v1/sync/changes?site_id=S&cursor=N`` returns the changes after version ``N`` that
concern site ``S``, oldest first, in pages. Versions come from one counter at central that
is incremented inside the writing transaction while holding a row lock, so versions
become visible in order: a reader that has seen version ``v`` can never later find a
committed change below ``v``. Timestamps are never a cursor.

A delete is a tombstone (``op = "delete"``, no ``data``), so an edge that was offline when
a barcode was withdrawn still removes it from its cache.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jxc.contract import CONTRACT_VERSION, Code, ExactDecimal, Int64, SiteId, Text

Barcode = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
"""Printable ASCII, no spaces: what a scanner can send, GTIN-14 normalised or not."""
Uom = Annotated[Text, Field(min_length=1, max_length=16)]
"""A unit as an item declares it and every event of the item repeats it: the event
contract's own rule (single-line text, at most 16 characters), so a unit central takes
into the item master is one the edge can put in an event."""


class FeedEntity(StrEnum):
    """What a change is about. The list grows (PO lines, label templates, reorder points)."""

    ITEM = "item"
    BARCODE = "barcode"


class ChangeOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


class ItemData(BaseModel):
    """An item as a site sees it: no cost, no supplier prices."""

    model_config = ConfigDict(extra="forbid")

    item_code: Code
    name: Annotated[Text, Field(max_length=200)] = ""
    uom: Uom = "EA"
    active: bool = True


class BarcodeData(BaseModel):
    """A code that identifies an item, and how many of the item's unit one scan counts.

    ``qty_per`` lets a case barcode (GTIN of a carton of 12) book 12 units.
    """

    model_config = ConfigDict(extra="forbid")

    barcode: Barcode
    item_code: Code
    qty_per: ExactDecimal = Decimal(1)

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.qty_per <= 0:
            raise ValueError("qty_per must be positive")
        return self


class Change(BaseModel):
    """One entry of the feed: the full new state of one entity, or its tombstone."""

    model_config = ConfigDict(extra="forbid")

    version: Annotated[Int64, Field(ge=1)]
    entity: FeedEntity
    key: Annotated[Text, Field(min_length=1, max_length=128)]
    op: ChangeOp
    data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _data_matches_op(self) -> Self:
        if self.op is ChangeOp.UPSERT and self.data is None:
            raise ValueError("an upsert carries the entity's data")
        if self.op is ChangeOp.DELETE and self.data is not None:
            raise ValueError("a delete (tombstone) carries no data")
        return self

    def item(self) -> ItemData:
        return ItemData.model_validate(self.data)

    def barcode(self) -> BarcodeData:
        return BarcodeData.model_validate(self.data)


class ChangePage(BaseModel):
    """One page of a site's feed. Store ``next_cursor`` with the applied page, atomically."""

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    changes: list[Change]
    next_cursor: Int64 = Field(description="the version of the last change in this page")
    has_more: bool
