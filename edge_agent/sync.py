"""Push the ledger's outbox to central: at-least-once delivery, exactly-once effect.

Central dedupes by event id, so resending is always safe; the only thing that must never
happen is marking an event synced that central does not hold. Rows are therefore marked
only up to the ``acked_through_seq`` watermark of a successful answer, and only after it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from edge_agent.ledger import Ledger
from jxc.contract import EventStatus, PushAck, PushBatch

log = logging.getLogger("edge_agent.sync")

PUSH_PATH = "/api/v1/sync/events"
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass
class PushState:
    """What the status page shows about sync; updated only by the push job."""

    last_success_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    events_pushed: int = 0
    clock_skew_s: float | None = None
    next_attempt_at: float = 0.0
    rejected: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "events_pushed": self.events_pushed,
            "clock_skew_s": self.clock_skew_s,
            "rejected": dict(self.rejected),
        }


class Pusher:
    """Sends the outbox in seq-ordered batches; one instance per ledger, one run at a time."""

    def __init__(
        self,
        ledger: Ledger,
        client: httpx.Client,
        *,
        batch_size: int = 500,
        max_backoff_s: float = 60.0,
        max_batches_per_run: int = 20,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self.max_batches_per_run = max_batches_per_run
        self.state = PushState()
        self._run_lock = threading.Lock()

    def run(self) -> None:
        """One scheduled run: drain a bounded number of batches, or back off on failure."""
        if time.monotonic() < self.state.next_attempt_at:
            return
        if not self._run_lock.acquire(blocking=False):
            return
        try:
            for _ in range(self.max_batches_per_run):
                if not self.push_once():
                    break
        finally:
            self._run_lock.release()

    def push_once(self) -> bool:
        """Send one batch. True if it was acknowledged and more may be waiting."""
        events = self.ledger.pending(self.batch_size)
        if not events:
            return False
        batch = PushBatch(site_id=self.ledger.site_id, events=events)
        sent_at = time.time()
        try:
            response = self.client.post(
                PUSH_PATH,
                content=batch.model_dump_json(),
                headers={"content-type": "application/json"},
            )
        except httpx.HTTPError as exc:
            self._failed(f"central unreachable: {exc.__class__.__name__}: {exc}")
            return False
        if response.status_code != 200:
            self._failed(f"central answered {response.status_code}: {response.text[:300]}")
            return False
        try:
            ack = PushAck.model_validate_json(response.content)
        except ValidationError as exc:
            self._failed(f"central's answer is not a push ack: {exc}")
            return False
        marked = self.ledger.mark_synced(ack.acked_through_seq)
        self._succeeded(ack, sent_at, marked)
        return ack.acked_through_seq >= events[-1].seq

    def _succeeded(self, ack: PushAck, sent_at: float, marked: int) -> None:
        state = self.state
        state.last_success_at = datetime.now(UTC)
        state.last_error = None
        state.consecutive_failures = 0
        state.next_attempt_at = 0.0
        state.events_pushed += marked
        # Midpoint of the request against central's clock: good to the round-trip time.
        midpoint = (sent_at + time.time()) / 2
        state.clock_skew_s = round(midpoint - ack.server_time.timestamp(), 3)
        for result in ack.results:
            if result.status in (EventStatus.CONFLICT, EventStatus.INVALID):
                state.rejected[result.status.value] = state.rejected.get(result.status.value, 0) + 1
                log.error(
                    "central refused an event",
                    extra={
                        "site": ack.site_id,
                        "seq": result.seq,
                        "event_id": str(result.event_id),
                        "status": result.status.value,
                        "detail": result.detail,
                    },
                )
        log.info(
            "pushed",
            extra={
                "site": ack.site_id,
                "acked_through_seq": ack.acked_through_seq,
                "marked": marked,
            },
        )

    def _failed(self, reason: str) -> None:
        """Exponential backoff with full jitter, so many sites do not retry in step."""
        state = self.state
        state.consecutive_failures += 1
        state.last_error = reason
        ceiling = min(self.max_backoff_s, 0.5 * 2 ** min(state.consecutive_failures, 16))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not security
        state.next_attempt_at = time.monotonic() + delay
        log.warning(
            "push failed",
            extra={
                "site": self.ledger.site_id,
                "reason": reason,
                "failures": state.consecutive_failures,
                "retry_in_s": round(delay, 3),
            },
        )
