"""``/api/v1/items``: the item master and its barcodes, which sites pull through the feed.

Item codes and barcodes may contain ``/`` (percent-encoded as ``%2F`` in the URL), so the
path parameters take the rest of the path rather than one segment.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.errors import PermissionDeniedError
from central_api.schemas.items import ItemIn, ItemOut, ItemPage
from central_api.services.items import (
    MAX_ITEMS_PAGE,
    deactivate_item,
    delete_barcode,
    get_item,
    list_items,
    upsert_item,
)
from jxc.contract import Code, Text
from jxc.feed import Barcode, BarcodeData, ItemData
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
    if (body.cost is not None or body.price is not None) and not principal.financial:
        raise PermissionDeniedError(
            f"{principal.label} may not set cost or price: their roles lack the financial "
            "field group"
        )
    item = ItemData(item_code=item_code, name=body.name, uom=body.uom, active=body.active)
    barcodes = (
        None
        if body.barcodes is None
        else [
            BarcodeData(barcode=entry.barcode, item_code=item_code, qty_per=entry.qty_per)
            for entry in body.barcodes
        ]
    )
    stored = upsert_item(
        connection=connection,
        item=item,
        barcodes=barcodes,
        audit=audit,
        cost=body.cost,
        price=body.price,
    )
    return ItemOut.model_validate(stored)


@router.get("", dependencies=[READ])
def read_items(
    connection: ConnDep,
    after: Annotated[
        Text | None,
        Query(
            max_length=64,
            description="the next_after of the previous page; omit (or empty) for the first",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ITEMS_PAGE)] = 100,
) -> ItemPage:
    """Items in item_code order with their barcodes, a page at a time."""
    return ItemPage.model_validate(
        list_items(connection=connection, after=after or None, limit=limit)
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
