"""Reading stock: balances per (site, location, item, lot).

Balances are read from the projection kept by ingest, never summed from the ledger, so a
stock query costs the same on day one and after a million events.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select

from central_api.models.stock import NO_LOT, stock_balances


@dataclass(frozen=True, slots=True)
class StockBalance:
    """What is on hand at one (site, location, item, lot), as the ledger sums it."""

    site_id: str
    location: str
    item: str
    lot: str | None
    """None for stock kept without a lot."""
    uom: str
    qty: Decimal


def list_balances(
    *,
    connection: Connection,
    site_id: str | None = None,
    item: str | None = None,
    lot: str | None = None,
    location: str | None = None,
    sites: Collection[str] | None = None,
) -> list[StockBalance]:
    """Balances matching every filter given, in key order so pages and diffs are stable.

    ``lot=""`` selects stock kept without a lot; ``lot=None`` means any lot. ``sites``
    limits the answer to those sites (a user's scope); None means every site.
    """
    query = _balances_query(
        site_id is not None,
        sites is not None,
        item is not None,
        lot is not None,
        location is not None,
    )
    given = {"site_id": site_id, "item": item, "lot": lot, "location": location}
    params: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if sites is not None:
        params["sites"] = sorted(sites)
    return [
        StockBalance(
            site_id=row.site_id,
            location=row.location,
            item=row.item,
            lot=None if row.lot == NO_LOT else row.lot,
            uom=row.uom,
            qty=row.qty,
        )
        for row in connection.execute(query, params)
    ]


@functools.cache
def _balances_query(site: bool, sites: bool, item: bool, lot: bool, location: bool) -> Select[Any]:
    """The balances query for the filters given, built once per combination with bound
    parameters: a console polls the stock of one item, and building the statement
    (coercing each value, computing its cache key) cost more than running it
    (``docs/performance.md``, "Cost per request")."""
    query = select(
        stock_balances.c.site_id,
        stock_balances.c.location,
        stock_balances.c.item,
        stock_balances.c.lot,
        stock_balances.c.uom,
        stock_balances.c.qty,
    ).order_by(
        stock_balances.c.site_id,
        stock_balances.c.location,
        stock_balances.c.item,
        stock_balances.c.lot,
    )
    if site:
        query = query.where(stock_balances.c.site_id == bindparam("site_id"))
    if sites:
        query = query.where(stock_balances.c.site_id.in_(bindparam("sites", expanding=True)))
    if item:
        query = query.where(stock_balances.c.item == bindparam("item"))
    if lot:
        query = query.where(stock_balances.c.lot == bindparam("lot"))
    if location:
        query = query.where(stock_balances.c.location == bindparam("location"))
    return query
