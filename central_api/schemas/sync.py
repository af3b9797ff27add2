"""``/sync``'s requests and answers: the wire contract, and central's own reports to a site.

What an edge sends and reads back is the wire contract (:mod:`jxc.contract`,
:mod:`jxc.feed`), shared with the edge so both sides validate with the same code; it is
re-exported here so that every HTTP model a route uses is found under ``schemas/``. The
rest are central's answers that only tools and people read.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from jxc.contract import (
    Int64,
    MultilineText,
    PushAck,
    PushBatch,
    SiteId,
    SiteToken,
    SiteTokenRequest,
    Text,
)
from jxc.feed import ChangePage

if TYPE_CHECKING:
    from central_api.services.feed import FeedPage
    from central_api.services.ingest import PushOutcome

__all__ = [
    "ChangePage",
    "PushAck",
    "PushBatch",
    "RefusedEventOut",
    "SiteToken",
    "SiteTokenRequest",
    "SyncAckOut",
    "change_page",
    "push_ack",
]


class SyncAckOut(BaseModel):
    """The push watermark central holds for a site: every seq up to it, none missing."""

    site_id: SiteId
    acked_through_seq: Int64


class RefusedEventOut(BaseModel):
    """An event of a site's ledger that central refused and recorded; its seq is settled
    so later events are not held back. It stays here until a requeue is accepted."""

    model_config = ConfigDict(from_attributes=True)

    site_id: SiteId
    seq: Int64
    event_id: Annotated[Text, Field(max_length=64)]
    status: Annotated[Text, Field(max_length=32)]
    detail: Annotated[MultilineText, Field(max_length=4000)]
    attempts: Int64
    first_refused_at: datetime
    last_refused_at: datetime
    event: dict[str, Any]


def push_ack(outcome: PushOutcome) -> PushAck:
    """The contract's answer to a push, from what ingest made of it.

    The verdicts become models in one validation of the whole answer: building a batch's
    thousands of results one by one cost more than twice as much.
    """
    return PushAck.model_validate(
        {
            "site_id": outcome.site_id,
            "acked_through_seq": outcome.acked_through_seq,
            "results": outcome.verdicts,
            "server_time": outcome.received_at,
        }
    )


def change_page(page: FeedPage) -> ChangePage:
    """The contract's page of the change feed, from the feed's own."""
    return ChangePage.model_validate(page, from_attributes=True)
