"""The wire shape of short picks an edge reports to central (``POST /sync/pick-shorts``).

A short pick moves no stock, so no ledger event can carry it (every event's ``qty`` is
non-zero): the picking station's ``DONE`` keeps each line picked short in the ledger
file's ``pick_shorts`` table, and the pusher sends those central has not acknowledged.
Central raises one ``short_pick`` alert per ``short_id``: a resend is the same report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from jxc.contract import Code, ExactDecimal, SiteId, Text

MAX_SHORTS = 500
"""The most a report carries; the edge sends more in several."""


class PickShort(BaseModel):
    """One order line a picker ended short of what its pick list reserved."""

    model_config = ConfigDict(extra="forbid")

    short_id: Annotated[str, Field(pattern=r"^[0-9a-f-]{32,36}$")]
    so_id: Code
    so_line: Annotated[int, Field(ge=1, le=1_000_000)]
    item: Code
    wanted: ExactDecimal
    picked: ExactDecimal
    uom: Annotated[Text, Field(min_length=1, max_length=16)]
    device_id: Annotated[Text, Field(max_length=64)] | None = None
    reported_at: datetime


class PickShortReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: SiteId
    shorts: Annotated[list[PickShort], Field(min_length=1, max_length=MAX_SHORTS)]


class PickShortAck(BaseModel):
    """Every short of the report is held (``raised`` new alerts; the rest were known, or
    named an order central does not have for the site and were logged and dropped)."""

    raised: int
    known: int
    dropped: int
