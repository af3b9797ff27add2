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

from datetime import date, datetime
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
    """What a change is about. The list grows (PO lines next).

    An agent skips entities it does not cache; each still moves its cursor.
    """

    ITEM = "item"
    BARCODE = "barcode"
    ITEM_UNIT = "item_unit"
    """A unit of an item other than its base unit, keyed ``<item_code> <uom>``."""
    ITEM_SITE = "item_site"
    """Safety stock and reorder levels of an item at the site, keyed by item code."""
    LOCATION = "location"
    """A node of the site's location tree, keyed by location code."""
    REFERENCE = "reference"
    """An entry of a reference list (reason codes, units, label templates...), keyed
    ``<list> <code>``."""
    PO_LINE = "po_line"
    """An open line of a purchase order for the site, keyed ``<po_id> <line_no>``; its
    tombstone (the PO was cancelled or closed) means: book nothing more against it."""
    PICK_LIST = "pick_list"
    """A confirmed sales order's reservations at the site, keyed by ``so_id``: what the
    picking station picks. Its tombstone (the order was cancelled or closed) means: pick
    nothing more for it."""
    TRANSFER = "transfer"
    """An approved transfer order, sent to both ends (each site's own change), keyed by
    ``transfer_id``: what the transfer stations ship (at ``from_site``) and receive (at
    ``to_site``). Its tombstone (cancelled, or received at central) means: book nothing
    more against it."""
    CATEGORY = "category"
    """A node of the item category tree, sent to every site, keyed by its code: its parent
    and its own expiry alert bands (none: it inherits its parent's), so an edge judges a
    lot's expiry by its item's category offline, as central does. No name, no coding
    rule: nothing at a site reads them."""
    COUNT = "count"
    """An open stock count session of the site (盘点), keyed by ``count_id``: its lines to
    count (location, item, lot; **never** an expected quantity: counting is blind), sent
    when it opens, again when a submit marks lines for a recount and when a count entered
    at central adds a line (found stock). Its tombstone (the
    session left ``counting``: in review, posted or cancelled) means: count nothing more."""
    CUSTOMER_RETURN = "customer_return"
    """An authorised customer return (退货, an RMA) of the site, keyed by ``return_id``:
    what the returns station receives. Its tombstone (received at central, or closed)
    means: receive nothing more against it."""


class ChangeOp(StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"


ValuationMethod = Literal["moving_average", "fifo"]


class ItemData(BaseModel):
    """An item as a site sees it: no cost, no supplier prices.

    The fields after ``active`` came with the master data of issue 13; central leaves a
    field out of the feed while it holds its default, so an item that uses none of them
    looks exactly as it did before.
    """

    model_config = ConfigDict(extra="forbid")

    item_code: Code
    name: Annotated[Text, Field(max_length=200)] = ""
    uom: Uom = "EA"
    active: bool = True
    name_en: Annotated[Text, Field(max_length=200)] = ""
    category: Code | None = None
    lot_tracked: bool = False
    expiry_tracked: bool = False
    serial_tracked: bool = False
    shelf_life_days: Annotated[int, Field(ge=0, le=36_500)] | None = None
    min_remaining_days: Annotated[int, Field(ge=0, le=36_500)] | None = Field(
        default=None, description="the least shelf life left that receiving accepts"
    )
    unit_weight: ExactDecimal | None = Field(
        default=None, description="expected weight of one base unit, in kg"
    )
    weight_tolerance: ExactDecimal | None = Field(
        default=None, description="accepted deviation from the expected weight, in percent"
    )
    archived: bool = False


ExpiryBand = Annotated[int, Field(ge=1, le=3650)]


class CategoryData(BaseModel):
    """A category as a site needs it: where it sits in the tree and its own expiry alert
    bands in days before expiry (``[15, 30, 60]``); ``None`` inherits the nearest
    ancestor's, and a tree with none uses the default 30/60/90."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    parent: Code | None = None
    expiry_days: Annotated[list[ExpiryBand], Field(min_length=1, max_length=5)] | None = None


class ItemUnitData(BaseModel):
    """One unit of an item other than its base unit: ``factor`` base units make one."""

    model_config = ConfigDict(extra="forbid")

    item_code: Code
    uom: Uom
    factor: ExactDecimal


class ItemSiteData(BaseModel):
    """An item's stock levels at one site, in the item's base unit."""

    model_config = ConfigDict(extra="forbid")

    item_code: Code
    safety_stock: ExactDecimal
    reorder_point: ExactDecimal
    reorder_qty: ExactDecimal


LocationLevel = Literal["zone", "aisle", "bin"]
LocationKind = Literal["storage", "receiving", "quarantine", "damaged", "in_transit"]


class LocationData(BaseModel):
    """A node of a site's location tree."""

    model_config = ConfigDict(extra="forbid")

    code: Code
    parent: Code | None = None
    level: LocationLevel
    kind: LocationKind
    name: Annotated[Text, Field(max_length=200)] = ""
    active: bool = True


class ReferenceData(BaseModel):
    """An entry of a reference list; ``attrs`` holds the list's own fields."""

    model_config = ConfigDict(extra="forbid")

    list: Annotated[Text, Field(min_length=1, max_length=32)]
    code: Annotated[Text, Field(min_length=1, max_length=32)]
    name: Annotated[Text, Field(max_length=200)] = ""
    name_en: Annotated[Text, Field(max_length=200)] = ""
    attrs: dict[str, Any] = Field(default_factory=dict)
    active: bool = True


class PoLineData(BaseModel):
    """A purchase order line a site may receive against: never a price.

    Quantities are in the item's base unit (what events are booked in); the station
    books ``receipt`` events naming ``doc_type="purchase_order"``, ``doc_id=po_id`` and
    ``doc_line=line_no``. Receipts beyond ``qty`` x (1 + ``over_tolerance`` / 100) are
    still booked (facts are never refused) but raise an exception at central.
    """

    model_config = ConfigDict(extra="forbid")

    po_id: Code
    line_no: Annotated[Int64, Field(ge=1)]
    supplier: Code
    item_code: Code
    qty: ExactDecimal = Field(description="ordered, in the item's base unit")
    uom: Uom = Field(description="the item's base unit")
    order_qty: ExactDecimal = Field(description="as ordered, in order_uom")
    order_uom: Uom
    expected_date: date | None = None
    over_tolerance: ExactDecimal = Field(description="percent more that may be received")
    under_tolerance: ExactDecimal = Field(description="percent less that completes the line")


class PickLotData(BaseModel):
    """One reserved lot of a pick list line, in the item's base unit."""

    model_config = ConfigDict(extra="forbid")

    lot: Annotated[Text, Field(max_length=40)] = Field(description="'' for stock without a lot")
    expiry: date | None = None
    qty: ExactDecimal


class PickLineData(BaseModel):
    """An SO line to pick: its reserved lots, earliest expiry first. Never a price."""

    model_config = ConfigDict(extra="forbid")

    so_line: Annotated[Int64, Field(ge=1)]
    item_code: Code
    uom: Uom = Field(description="the item's base unit, what the picks are booked in")
    qty: ExactDecimal = Field(description="ordered, in the base unit")
    shipped: ExactDecimal = Field(
        default=Decimal(0), description="shipped at central so far (the edge's synced picks too)"
    )
    lots: list[PickLotData]


class PickListData(BaseModel):
    """A released pick list: a confirmed order's reservations at the site.

    The station books ``issue`` events naming ``doc_type="sales_order"``, ``doc_id=so_id``
    and ``doc_line=so_line``. ``min_remaining_days`` is the shelf life the customer needs
    (the larger of the order's and the item's, per line at central; the order's here, the
    item's the edge has itself): a lot swapped in must still have it.
    """

    model_config = ConfigDict(extra="forbid")

    so_id: Code
    customer: Code
    so_version: Annotated[Int64, Field(ge=1)]
    min_remaining_days: Annotated[int, Field(ge=0, le=36_500)] | None = None
    lines: list[PickLineData]


TRANSFER_COMPLETE = "transfer complete"
"""The ``ref`` of the last event an edge books when it ends its side of a transfer (the
transfer-out station's ``DONE`` at the sending site, the transfer-in station's at the
receiving one). Central compares what left with what arrived, and raises the arrival
differences, once it holds both ends' marked events, in whichever order they reach it: a
partial arrival is not yet a difference, and an arrival that reaches central before the
shipment (the sender was offline) is not one either."""


class TransferLineData(BaseModel):
    """One line of a transfer order, in the item's base unit (what events are booked in)."""

    model_config = ConfigDict(extra="forbid")

    line_no: Annotated[Int64, Field(ge=1)]
    item_code: Code
    qty: ExactDecimal = Field(description="to move, in the base unit")
    uom: Uom = Field(description="the item's base unit")


class TransferData(BaseModel):
    """An approved transfer order as both of its ends see it. Never a cost.

    The sending site books ``transfer_out`` events, the receiving site ``transfer_in``
    events, each naming ``doc_type="transfer_order"``, ``doc_id=transfer_id`` and
    ``doc_line=line_no``; the last event of each end carries ``ref`` =
    :data:`TRANSFER_COMPLETE`.
    """

    model_config = ConfigDict(extra="forbid")

    transfer_id: Code
    from_site: SiteId
    to_site: SiteId
    version: Annotated[Int64, Field(ge=1)]
    lines: list[TransferLineData]


class ReturnLineData(BaseModel):
    """A line of a customer return as the returns station sees it, in the item's base unit."""

    model_config = ConfigDict(extra="forbid")

    line_no: Annotated[Int64, Field(ge=1)]
    item_code: Code
    lot: Annotated[Text, Field(max_length=40)] | None = Field(
        default=None, description="the lot authorised to come back, if the return names one"
    )
    expiry: date | None = None
    qty: ExactDecimal = Field(description="authorised to come back, in the base unit")
    uom: Uom = Field(description="the item's base unit")


class ReturnData(BaseModel):
    """An authorised customer return (RMA) of the site. Never a price.

    The returns station books ``return`` events naming ``doc_type="customer_return"``,
    ``doc_id=return_id`` and ``doc_line=line_no`` into the site's returns location.
    """

    model_config = ConfigDict(extra="forbid")

    return_id: Code
    so_id: Code
    customer: Code
    version: Annotated[Int64, Field(ge=1)]
    lines: list[ReturnLineData]


class CountLineData(BaseModel):
    """A line of a count session as the counters see it: where and what, never how many."""

    model_config = ConfigDict(extra="forbid")

    line_no: Annotated[Int64, Field(ge=1)]
    location: Code
    item_code: Code
    lot: Annotated[Text, Field(max_length=40)] | None = None
    uom: Uom = Field(description="the item's base unit: what a count is entered in")
    recount: bool = False


class CountData(BaseModel):
    """An open stock count session of the site (blind: no expected quantity).

    The edge enters counts against it and uploads them to ``POST /api/v1/sync/count-entries``
    (:class:`CountEntryBatch`), each naming this ``count_id``.
    """

    model_config = ConfigDict(extra="forbid")

    count_id: Code
    site_id: SiteId
    version: Annotated[Int64, Field(ge=1)]
    snapshot_at: datetime
    location_from: Code | None = None
    location_to: Code | None = None
    lines: list[CountLineData]


class CountEntryData(BaseModel):
    """One count entered at the edge: what was found at (location, item, lot).

    ``entry_id`` (a UUID the edge makes) makes the upload idempotent: central takes each
    id once. ``system_qty`` is the edge ledger's balance of the key when the count was
    entered: movements during the count are then not variances.
    """

    model_config = ConfigDict(extra="forbid")

    entry_id: Annotated[str, Field(min_length=1, max_length=36, pattern=r"^[0-9A-Za-z-]+$")]
    count_id: Code
    location: Code
    item_code: Code
    lot: Annotated[Text, Field(max_length=40)] | None = None
    qty: ExactDecimal = Field(description="counted, in the item's base unit; zero is a count")
    system_qty: ExactDecimal = Field(description="the edge's balance of the key at that moment")
    counted_by: Annotated[Text, Field(min_length=1, max_length=100)]
    counted_at: datetime


class CountEntryBatch(BaseModel):
    """What an edge uploads of its count entries (at most 1,000 at a time)."""

    model_config = ConfigDict(extra="forbid")

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    entries: Annotated[list[CountEntryData], Field(min_length=1, max_length=1000)]


class CountEntryVerdict(BaseModel):
    """Central's answer for one entry: ``taken`` (now or before), or ``refused`` and why
    (the session is no longer counting, the location is outside its range...). Either
    way the entry is settled: the edge does not send it again."""

    entry_id: str
    verdict: Literal["taken", "refused"]
    reason: str | None = None


class CountEntryAck(BaseModel):
    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    results: list[CountEntryVerdict]


class BarcodeData(BaseModel):
    """A code that identifies an item, and how many of the item's unit one scan counts.

    ``qty_per`` lets a case barcode (GTIN of a carton of 12) book 12 units.
    """

    model_config = ConfigDict(extra="forbid")

    barcode: Barcode
    item_code: Code
    qty_per: ExactDecimal = Decimal(1)
    uom: Uom | None = Field(
        default=None, description="the pack unit one scan means; absent: the base unit"
    )

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

    def item_unit(self) -> ItemUnitData:
        return ItemUnitData.model_validate(self.data)

    def item_site(self) -> ItemSiteData:
        return ItemSiteData.model_validate(self.data)

    def location(self) -> LocationData:
        return LocationData.model_validate(self.data)

    def reference(self) -> ReferenceData:
        return ReferenceData.model_validate(self.data)

    def po_line(self) -> PoLineData:
        return PoLineData.model_validate(self.data)

    def pick_list(self) -> PickListData:
        return PickListData.model_validate(self.data)

    def transfer(self) -> TransferData:
        return TransferData.model_validate(self.data)

    def count(self) -> CountData:
        return CountData.model_validate(self.data)

    def customer_return(self) -> ReturnData:
        return ReturnData.model_validate(self.data)

    def category(self) -> CategoryData:
        return CategoryData.model_validate(self.data)


class ChangePage(BaseModel):
    """One page of a site's feed. Store ``next_cursor`` with the applied page, atomically."""

    contract_version: Literal[1] = CONTRACT_VERSION
    site_id: SiteId
    changes: list[Change]
    next_cursor: Int64 = Field(description="the version of the last change in this page")
    has_more: bool
