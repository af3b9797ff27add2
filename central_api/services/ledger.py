"""Reading the ledgers sites pushed: each site's watermark and the events central refused.

Writing them is ingest's (:mod:`central_api.services.ingest`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from central_api.errors import UnknownSiteError
from central_api.models.ledger import refused_events, site_sync_state


@dataclass(frozen=True, slots=True)
class RefusedEvent:
    """An event of a site's ledger that central refused and recorded; its seq is settled,
    so the events after it went on."""

    site_id: str
    seq: int
    event_id: str
    status: str
    detail: str
    attempts: int
    first_refused_at: datetime
    last_refused_at: datetime
    event: dict[str, Any]
    """The event as it was pushed."""


def site_watermark(*, connection: Connection, site_id: str) -> int:
    """How far central holds the site's ledger (``acked_through_seq``); raises
    UnknownSiteError if central has never heard from the site."""
    acked = connection.execute(
        select(site_sync_state.c.acked_through_seq).where(site_sync_state.c.site_id == site_id)
    ).scalar_one_or_none()
    if acked is None:
        raise UnknownSiteError(site_id)
    return int(acked)


def list_refused(*, connection: Connection, site_id: str, limit: int) -> list[RefusedEvent]:
    """The site's refused events in seq order; raises UnknownSiteError for a site never seen."""
    site_watermark(connection=connection, site_id=site_id)
    rows = connection.execute(
        select(refused_events)
        .where(refused_events.c.site_id == site_id)
        .order_by(refused_events.c.seq)
        .limit(limit)
    )
    return [
        RefusedEvent(
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
