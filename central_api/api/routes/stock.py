"""``/api/v1/stock``: balances per (site, location, item, lot) as the ledgers sum them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from central_api.api.deps import ConnDep
from central_api.schemas.stock import StockBalanceOut
from central_api.services.stock import list_balances
from jxc.contract import Code, SiteId, Text
from jxc.paths import STOCK, below_api_root

router = APIRouter(prefix=below_api_root(STOCK), tags=["stock"])


@router.get("")
def read_stock(
    connection: ConnDep,
    site_id: Annotated[SiteId | None, Query()] = None,
    item: Annotated[Code | None, Query()] = None,
    lot: Annotated[
        Text | None,
        Query(max_length=40, description='"" for stock kept without a lot; omit for any lot'),
    ] = None,
    location: Annotated[Code | None, Query()] = None,
) -> list[StockBalanceOut]:
    """Balances matching every filter given, ordered by site, location, item, lot."""
    balances = list_balances(
        connection=connection, site_id=site_id, item=item, lot=lot, location=location
    )
    return [StockBalanceOut.model_validate(balance) for balance in balances]
