"""Shapes central answers with, apart from the wire contract it shares with the edge.

Amounts leave as strings for the same reason they arrive as strings (see
:mod:`jxc.contract`): a JSON number would pass through a binary float in some client.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer

DecimalText = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")
]
"""An exact amount, written as a plain decimal string (``"3.75"``, never ``"3.75E+0"``)."""


class StockBalanceOut(BaseModel):
    """What is on hand at one (site, location, item, lot), as the ledger sums it."""

    site_id: str
    location: str
    item: str
    lot: str | None
    uom: str
    qty: DecimalText


class SyncAckOut(BaseModel):
    """The push watermark central holds for a site: every seq up to it, none missing."""

    site_id: str
    acked_through_seq: int


class RefusedEventOut(BaseModel):
    """An event of a site's ledger that central refused and recorded; its seq is settled
    so later events are not held back. It stays here until a requeue is accepted."""

    site_id: str
    seq: int
    event_id: str
    status: str
    detail: str
    attempts: int
    first_refused_at: datetime
    last_refused_at: datetime
    event: dict[str, Any]


class HealthOut(BaseModel):
    """Liveness plus what a deployment check needs to match edge and central versions."""

    status: str
    database: str
    version: str
    contract_version: int
    message: str | None = None
