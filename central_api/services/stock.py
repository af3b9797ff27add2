"""Reading what central holds: balances, each site's push watermark and its refused events.

Balances are read from the projection kept by ingest, never summed from the ledger, so a
stock query costs the same on day one and after a million events.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, select

from central_api.errors import UnknownSiteError
from central_api.models import NO_LOT, refused_events, site_sync_state, stock_balances
from central_api.schemas import RefusedEventOut, StockBalanceOut, SyncAckOut


def site_watermark(*, connection: Connection, site_id: str) -> SyncAckOut:
    """How far central holds the site's ledger; raises UnknownSiteError if not at all."""
    acked = connection.execute(
        select(site_sync_state.c.acked_through_seq).where(site_sync_state.c.site_id == site_id)
    ).scalar_one_or_none()
    if acked is None:
        raise UnknownSiteError(site_id)
    return SyncAckOut(site_id=site_id, acked_through_seq=acked)


def list_balances(
    *,
    connection: Connection,
    site_id: str | None = None,
    item: str | None = None,
    lot: str | None = None,
    location: str | None = None,
) -> list[StockBalanceOut]:
    """Balances matching every filter given, in key order so pages and diffs are stable.

    ``lot=""`` selects stock kept without a lot; ``lot=None`` means any lot.
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
    if item is not None:
        query = query.where(stock_balances.c.item == item)
    if lot is not None:
        query = query.where(stock_balances.c.lot == lot)
    if location is not None:
        query = query.where(stock_balances.c.location == location)
    return [
        StockBalanceOut(
            site_id=row.site_id,
            location=row.location,
            item=row.item,
            lot=None if row.lot == NO_LOT else row.lot,
            uom=row.uom,
            qty=row.qty,
        )
        for row in connection.execute(query)
    ]


def list_refused(*, connection: Connection, site_id: str, limit: int) -> list[RefusedEventOut]:
    """The site's refused events in seq order; raises UnknownSiteError for a site never seen."""
    site_watermark(connection=connection, site_id=site_id)
    rows = connection.execute(
        select(refused_events)
        .where(refused_events.c.site_id == site_id)
        .order_by(refused_events.c.seq)
        .limit(limit)
    )
    return [
        RefusedEventOut(
            site_id=row.site_id,
            seq=row.seq,
            event_id=row.event_id,
            status=row.status,
            detail=row.detail,
            attempts=row.attempts,
            first_refused_at=row.first_refused_at,
            last_refused_at=row.last_refused_at,
            event=json.loads(row.body),
        )
        for row in rows
    ]
