"""Reading stock: balances per (site, location, item, lot).

Balances are read from the projection kept by ingest, never summed from the ledger, so a
stock query costs the same on day one and after a million events.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, select

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
    if site_id is not None:
        query = query.where(stock_balances.c.site_id == site_id)
    if sites is not None:
        query = query.where(stock_balances.c.site_id.in_(sorted(sites)))
    if item is not None:
        query = query.where(stock_balances.c.item == item)
    if lot is not None:
        query = query.where(stock_balances.c.lot == lot)
    if location is not None:
        query = query.where(stock_balances.c.location == location)
    return [
        StockBalance(
            site_id=row.site_id,
            location=row.location,
            item=row.item,
            lot=None if row.lot == NO_LOT else row.lot,
            uom=row.uom,
            qty=row.qty,
        )
        for row in connection.execute(query)
    ]
