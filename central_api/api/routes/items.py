"""``/api/v1/items``: the item master and its barcodes, which sites pull through the feed.

Item codes and barcodes may contain ``/`` (percent-encoded as ``%2F`` in the URL), so the
path parameters take the rest of the path rather than one segment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import on_connection
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep, principal_in_trip
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


def _json(model: BaseModel) -> bytes:
    """The answer's body, made in the route's worker-thread trip rather than on the loop."""
    return model.model_dump_json().encode()


def _answer(body: bytes, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(body, status_code=status_code, media_type="application/json")


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
    response_model=ItemOut,
    responses={
        403: {"description": "A price given by a role without the financial group."},
        409: {"description": "The code is taken, or a barcode belongs to another item."},
        422: {"description": "The body is invalid; message names each field."},
    },
)
async def add_item(
    *,
    request: Request,
    body: ItemCreate,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
) -> Response:
    """Create an item; without ``item_code`` its category's coding rule makes the code.

    With an ``Idempotency-Key``, a retry of the same request is answered with the item
    the first one made (header ``Idempotent-Replayed: true``), never a second item.
    """
    _refuse_unseen_money(body, principal)

    def work(connection: Connection) -> tuple[bytes, bool]:
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
            item = get_item(connection=connection, item_code=replay.resource_id)
            return _json(ItemOut.model_validate(item)), True
        return _json(ItemOut.model_validate(item)), False

    answer, was_replayed = await on_connection(request, work)
    response = _answer(answer, status.HTTP_201_CREATED)
    if was_replayed:
        replayed(response)
    return response


@router.put(
    "/{item_code:path}",
    dependencies=[WRITE],
    response_model=ItemOut,
    responses={
        403: {"description": "Cost or price given by a role without the financial group."},
        409: {"description": "A barcode belongs to another item; detail names both."},
        422: {"description": "The body is invalid; message names each field."},
    },
)
async def put_item(
    request: Request,
    item_code: ItemCode,
    body: ItemIn,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    """Create or replace the item; with ``barcodes``, replace its barcode set too.

    Sending the same body again changes nothing and adds nothing to the change feed.
    ``cost`` and ``price`` (financial: only a role with the financial field group may set
    them) are kept when omitted, and never go to the sites.
    """
    _refuse_unseen_money(body, principal)

    def work(connection: Connection) -> bytes:
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
        return _json(ItemOut.model_validate(stored))

    return _answer(await on_connection(request, work))


@router.get("", dependencies=[READ], response_model=ItemPage)
@principal_in_trip
async def read_items(
    request: Request,
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
) -> Response:
    """Items in item_code order with their units and barcodes, a page at a time."""
    filters = ItemFilter(
        q=q or None,
        barcode=barcode,
        category=category,
        active=active,
        archived={"exclude": False, "include": None, "only": True}[archived],
    )

    def work(connection: Connection) -> bytes:
        page = list_items(connection=connection, after=after or None, limit=limit, filters=filters)
        return _json(ItemPage.model_validate(page))

    return _answer(await on_connection(request, work))


@router.get("/{item_code:path}", responses=_NOT_FOUND, dependencies=[READ], response_model=ItemOut)
@principal_in_trip
async def read_item(request: Request, item_code: ItemCode) -> Response:
    """One item with its barcodes."""

    def work(connection: Connection) -> bytes:
        return _json(ItemOut.model_validate(get_item(connection=connection, item_code=item_code)))

    return _answer(await on_connection(request, work))


@router.delete(
    "/{item_code:path}/barcodes/{barcode:path}",
    responses=_NOT_FOUND,
    dependencies=[WRITE],
    response_model=ItemOut,
)
async def remove_barcode(
    request: Request, item_code: ItemCode, barcode: BarcodePath, audit: AuditDep
) -> Response:
    """Withdraw one barcode of the item (sites receive a tombstone); returns the item."""

    def work(connection: Connection) -> bytes:
        item = delete_barcode(
            connection=connection, item_code=item_code, barcode=barcode, audit=audit
        )
        return _json(ItemOut.model_validate(item))

    return _answer(await on_connection(request, work))


@router.post(
    "/{item_code:path}/deactivate",
    responses=_NOT_FOUND,
    dependencies=[WRITE],
    response_model=ItemOut,
)
async def deactivate(request: Request, item_code: ItemCode, audit: AuditDep) -> Response:
    """Mark the item inactive; it is kept, since the ledgers reference it."""

    def work(connection: Connection) -> bytes:
        item = deactivate_item(connection=connection, item_code=item_code, audit=audit)
        return _json(ItemOut.model_validate(item))

    return _answer(await on_connection(request, work))


@router.post(
    "/{item_code:path}/restore", responses=_NOT_FOUND, dependencies=[WRITE], response_model=ItemOut
)
async def restore(request: Request, item_code: ItemCode, audit: AuditDep) -> Response:
    """Bring an archived item back, active."""

    def work(connection: Connection) -> bytes:
        item = restore_item(connection=connection, item_code=item_code, audit=audit)
        return _json(ItemOut.model_validate(item))

    return _answer(await on_connection(request, work))


@router.delete(
    "/{item_code:path}", responses=_NOT_FOUND, dependencies=[WRITE], response_model=ItemRemoved
)
async def delete_item(request: Request, item_code: ItemCode, audit: AuditDep) -> Response:
    """Delete the item if its stock never moved; else archive it (the ledgers keep it)."""

    def work(connection: Connection) -> bytes:
        outcome = remove_item(connection=connection, item_code=item_code, audit=audit)
        removed = ItemRemoved.model_validate(
            {
                "item_code": outcome.item_code,
                "outcome": outcome.outcome,
                "item": None if outcome.item is None else ItemOut.model_validate(outcome.item),
            }
        )
        return _json(removed)

    return _answer(await on_connection(request, work))
