"""``/api/v1/items``: the item master and its barcodes, which sites pull through the feed.

Item codes and barcodes may contain ``/`` (percent-encoded as ``%2F`` in the URL), so the
path parameters take the rest of the path rather than one segment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import PermissionDeniedError
from central_api.schemas.items import ItemCreate, ItemIn, ItemOut, ItemPage, ItemRemoved
from central_api.services.idempotency import IdempotentReplay
from central_api.services.items import (
    MAX_ITEMS_PAGE,
    BarcodeSpec,
    ItemFilter,
    UnitSpec,
    create_item,
    deactivate_item,
    delete_barcode,
    get_item,
    list_items,
    remove_item,
    restore_item,
    upsert_item,
)
from jxc.contract import Code, Text
from jxc.feed import Barcode, ItemData
from jxc.paths import ITEMS, below_api_root

router = APIRouter(prefix=below_api_root(ITEMS), tags=["items"])

ItemCode = Annotated[Code, Path(description="the item's code; a / in it is sent as %2F")]
BarcodePath = Annotated[Barcode, Path(description="the barcode; a / in it is sent as %2F")]

READ = Requires("items.read", site=True)
"""Users allowed to read items, and sites (the master data is every site's)."""
WRITE = Requires("items.write")

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such item (or barcode of the item); detail names it."},
}


def _refuse_unseen_money(body: ItemIn, principal: Principal) -> None:
    if any(value is not None for value in body.financial().values()) and not principal.financial:
        raise PermissionDeniedError(
            f"{principal.label} may not set cost or price: their roles lack the financial "
            "field group"
        )


def _barcodes(body: ItemIn) -> list[BarcodeSpec] | None:
    if body.barcodes is None:
        return None
    return [
        BarcodeSpec(barcode=entry.barcode, uom=entry.uom, qty_per=entry.qty_per, kind=entry.kind)
        for entry in body.barcodes
    ]


def _units(body: ItemIn) -> list[UnitSpec] | None:
    if body.units is None:
        return None
    return [UnitSpec(uom=entry.uom, factor=entry.factor, of=entry.of) for entry in body.units]


@router.post(
    "",
    dependencies=[WRITE],
    status_code=status.HTTP_201_CREATED,
    responses={
        403: {"description": "A price given by a role without the financial group."},
        409: {"description": "The code is taken, or a barcode belongs to another item."},
        422: {"description": "The body is invalid; message names each field."},
    },
)
def add_item(
    *,
    body: ItemCreate,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ItemOut:
    """Create an item; without ``item_code`` its category's coding rule makes the code.

    With an ``Idempotency-Key``, a retry of the same request is answered with the item
    the first one made (header ``Idempotent-Replayed: true``), never a second item.
    """
    _refuse_unseen_money(body, principal)
    try:
        item = create_item(
            connection=connection,
            item_code=body.item_code,
            fields=body.feed_fields(),
            barcodes=_barcodes(body),
            units=_units(body),
            financial=body.financial(),
            valuation=body.valuation,
            audit=audit,
            claim=claim,
        )
    except IdempotentReplay as replay:
        replayed(response)
        item = get_item(connection=connection, item_code=replay.resource_id)
    return ItemOut.model_validate(item)


@router.put(
    "/{item_code:path}",
    dependencies=[WRITE],
    responses={
        403: {"description": "Cost or price given by a role without the financial group."},
        409: {"description": "A barcode belongs to another item; detail names both."},
        422: {"description": "The body is invalid; message names each field."},
    },
)
def put_item(
    item_code: ItemCode,
    body: ItemIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> ItemOut:
    """Create or replace the item; with ``barcodes``, replace its barcode set too.

    Sending the same body again changes nothing and adds nothing to the change feed.
    ``cost`` and ``price`` (financial: only a role with the financial field group may set
    them) are kept when omitted, and never go to the sites.
    """
    _refuse_unseen_money(body, principal)
    stored = upsert_item(
        connection=connection,
        item=ItemData(item_code=item_code, **body.feed_fields()),
        barcodes=_barcodes(body),
        units=_units(body),
        valuation=body.valuation,
        audit=audit,
        cost=body.cost,
        price=body.price,
        purchase_price=body.purchase_price,
    )
    return ItemOut.model_validate(stored)


@router.get("", dependencies=[READ])
def read_items(
    connection: ConnDep,
    *,
    after: Annotated[
        Text | None,
        Query(
            max_length=64,
            description="the next_after of the previous page; omit (or empty) for the first",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS_PAGE)] = 100,
    q: Annotated[
        Text | None,
        Query(
            max_length=200,
            description="a code prefix, part of either name, or a whole barcode (any GTIN "
            "spelling): what a search box or a wedge scanner types",
        ),
    ] = None,
    barcode: Annotated[Barcode | None, Query(description="exactly this barcode")] = None,
    category: Annotated[Code | None, Query(description="this category or below it")] = None,
    active: Annotated[bool | None, Query()] = None,
    archived: Annotated[
        Literal["exclude", "include", "only"], Query(description="archived items")
    ] = "exclude",
) -> ItemPage:
    """Items in item_code order with their units and barcodes, a page at a time."""
    filters = ItemFilter(
        q=q or None,
        barcode=barcode,
        category=category,
        active=active,
        archived={"exclude": False, "include": None, "only": True}[archived],
    )
    return ItemPage.model_validate(
        list_items(connection=connection, after=after or None, limit=limit, filters=filters)
    )


@router.get("/{item_code:path}", responses=_NOT_FOUND, dependencies=[READ])
def read_item(item_code: ItemCode, connection: ConnDep) -> ItemOut:
    """One item with its barcodes."""
    return ItemOut.model_validate(get_item(connection=connection, item_code=item_code))


@router.delete(
    "/{item_code:path}/barcodes/{barcode:path}", responses=_NOT_FOUND, dependencies=[WRITE]
)
def remove_barcode(
    item_code: ItemCode, barcode: BarcodePath, connection: ConnDep, audit: AuditDep
) -> ItemOut:
    """Withdraw one barcode of the item (sites receive a tombstone); returns the item."""
    item = delete_barcode(connection=connection, item_code=item_code, barcode=barcode, audit=audit)
    return ItemOut.model_validate(item)


@router.post("/{item_code:path}/deactivate", responses=_NOT_FOUND, dependencies=[WRITE])
def deactivate(item_code: ItemCode, connection: ConnDep, audit: AuditDep) -> ItemOut:
    """Mark the item inactive; it is kept, since the ledgers reference it."""
    item = deactivate_item(connection=connection, item_code=item_code, audit=audit)
    return ItemOut.model_validate(item)


@router.post("/{item_code:path}/restore", responses=_NOT_FOUND, dependencies=[WRITE])
def restore(item_code: ItemCode, connection: ConnDep, audit: AuditDep) -> ItemOut:
    """Bring an archived item back, active."""
    item = restore_item(connection=connection, item_code=item_code, audit=audit)
    return ItemOut.model_validate(item)


@router.delete("/{item_code:path}", responses=_NOT_FOUND, dependencies=[WRITE])
def delete_item(item_code: ItemCode, connection: ConnDep, audit: AuditDep) -> ItemRemoved:
    """Delete the item if its stock never moved; else archive it (the ledgers keep it)."""
    outcome = remove_item(connection=connection, item_code=item_code, audit=audit)
    return ItemRemoved.model_validate(
        {
            "item_code": outcome.item_code,
            "outcome": outcome.outcome,
            "item": None if outcome.item is None else ItemOut.model_validate(outcome.item),
        }
    )
