"""Push the ledger's outbox to central: at-least-once delivery, exactly-once effect.

Central dedupes by event id, so resending is always safe; the only thing that must never
happen is marking an event synced that central does not hold. Rows are therefore marked
only up to the ``acked_through_seq`` watermark of a successful answer, and only after it.

What travels is the JSON each event was stored with, byte for byte: a retry can never
regenerate an id or change a field.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import ValidationError

from edge_agent.backoff import Backoff, retry_after_s
from edge_agent.ledger import Ledger, PendingEvent, Refusal, default_lease_holder
from edge_agent.transport import describe_transport_error
from jxc.contract import CONTRACT_VERSION, EventStatus, PushAck
from jxc.ids import uuid7
from jxc.paths import SYNC_ACK, SYNC_EVENTS, SYNC_PICK_SHORTS
from jxc.pick_shorts import MAX_SHORTS, PickShort, PickShortReport

log = logging.getLogger("edge_agent.sync")

PUSH_PATH = SYNC_EVENTS
REQUEST_ID_HEADER = "X-Request-ID"

_REFUSED = frozenset({EventStatus.CONFLICT, EventStatus.INVALID})

_CREDENTIAL_ALERT = "central refuses this site's credential"
"""Prefix of the status-page alert; cleared by the next successful push."""


def _settled(ack: PushAck, first: int, through: int) -> tuple[int, dict[int, Refusal]]:
    """How far the sent run ``first..`` is settled by ``ack``, and which of it was refused.

    Central settles every seq up to its watermark, but only a seq central answered for
    is taken out of the outbox: the run stops before the first seq without a result, so
    a malformed or partial answer can delay an event, never lose one.
    """
    answered = {result.seq: result for result in ack.results}
    refused: dict[int, Refusal] = {}
    seq = first
    while seq <= through and (result := answered.get(seq)) is not None:
        if result.status in _REFUSED:
            refused[seq] = Refusal(result.status.value, result.detail)
        seq += 1
    return seq - 1, refused


@dataclass
class PushState:
    """What the status page shows about sync; updated only by the push job."""

    last_success_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    events_pushed: int = 0
    batches_sent: int = 0
    clock_skew_s: float | None = None
    sender_since: float | None = None
    """When (epoch s) this agent's current hold of the sender lease began."""
    sender_until: float = 0.0
    """Until when (epoch s) the lease is surely this agent's: asked-at plus the TTL, never
    later than the expiry the ledger holds, so a standby can only take over after it."""
    batch_limit: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)
    last_request_id: str | None = None
    """The X-Request-ID of the last push, to find it in central's log."""
    rewinds: int = 0
    """How often central was found holding less than it had acknowledged (restored)."""

    @property
    def is_sender(self) -> bool:
        """Whether this agent holds the lease now, not merely at its last run.

        A run that is late (a busy machine, a long push) must not go on claiming a lease a
        standby may have taken meanwhile: labels are printed only by the sender.
        """
        return time.time() < self.sender_until

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "events_pushed": self.events_pushed,
            "batches_sent": self.batches_sent,
            "clock_skew_s": self.clock_skew_s,
            "is_sender": self.is_sender,
            "sender_since": self.sender_since if self.is_sender else None,
            "sender_until": self.sender_until if self.is_sender else None,
            "batch_limit": self.batch_limit,
            "rejected": dict(self.rejected),
            "alerts": list(self.alerts),
            "last_request_id": self.last_request_id,
            "rewinds": self.rewinds,
        }


class Pusher:
    """Sends the outbox in seq-ordered batches; one run at a time, one sender per ledger."""

    def __init__(
        self,
        ledger: Ledger,
        client: httpx.Client,
        *,
        batch_size: int = 500,
        max_batch_bytes: int = 1_000_000,
        max_backoff_s: float = 60.0,
        max_batches_per_run: int = 20,
        lease_ttl_s: float = 15.0,
        max_clock_skew_s: float = 120.0,
        lease_holder: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.client = client
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.max_backoff_s = max_backoff_s
        self.max_batches_per_run = max_batches_per_run
        self.lease_ttl_s = lease_ttl_s
        self.max_clock_skew_s = max_clock_skew_s
        self.lease_holder = lease_holder or default_lease_holder()
        self.state = PushState(batch_limit=batch_size)
        self.backoff = Backoff(max_s=max_backoff_s)
        self._run_lock = threading.Lock()

    def run(self) -> None:
        """One scheduled run: drain a bounded number of batches, or back off on failure."""
        if not self.backoff.ready():
            return
        if not self._run_lock.acquire(blocking=False):
            return
        try:
            if not self._hold_lease():
                return  # another agent process on this ledger is sending
            for _ in range(self.max_batches_per_run):
                if not self.push_once():
                    break
                if time.time() > self.state.sender_until - self.lease_ttl_s / 2 and (
                    not self._hold_lease()
                ):
                    break  # a long run outlived the lease and a standby took it
            if self.ledger.counts().pending == 0:
                # After the events: a short names lines whose picks central should hold.
                self.report_shorts()
        finally:
            self._run_lock.release()

    def report_shorts(self) -> int:
        """Send the short picks central has not acknowledged (``pick_shorts``), in reports
        of at most ``MAX_SHORTS``; mark them sent on a 200. A failure leaves them for the
        next run (central keys each by its id, so a resend after a lost answer is harmless).
        Returns how many were acknowledged."""
        sent = 0
        while True:
            with self.ledger.reading() as conn:
                rows = conn.execute(
                    "SELECT short_id, so_id, so_line, item, wanted, picked, uom, device_id,"
                    " reported_at FROM pick_shorts WHERE sent_at IS NULL"
                    " ORDER BY reported_at, short_id LIMIT ?",
                    (MAX_SHORTS,),
                ).fetchall()
            if not rows:
                return sent
            report = PickShortReport(
                site_id=self.ledger.site_id,
                shorts=[
                    PickShort(
                        short_id=row[0],
                        so_id=row[1],
                        so_line=row[2],
                        item=row[3],
                        wanted=row[4],
                        picked=row[5],
                        uom=row[6],
                        device_id=row[7],
                        reported_at=row[8],
                    )
                    for row in rows
                ],
            )
            try:
                response = self.client.post(
                    SYNC_PICK_SHORTS,
                    content=report.model_dump_json(),
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                log.warning("short picks not sent: central unreachable", extra={"error": str(exc)})
                return sent
            if response.status_code != 200:
                log.warning(
                    "short picks not sent",
                    extra={"status": response.status_code, "detail": response.text[:300]},
                )
                return sent
            now = datetime.now(UTC).isoformat()
            with self.ledger.transaction() as conn:
                conn.executemany(
                    "UPDATE pick_shorts SET sent_at = ? WHERE short_id = ?",
                    [(now, row[0]) for row in rows],
                )
            sent += len(rows)

    def _hold_lease(self) -> bool:
        """Take or renew the sender lease; record for how long it is surely ours."""
        held = self.state.is_sender
        asked_at = time.time()
        if not self.ledger.acquire_sender_lease(self.lease_holder, ttl_s=self.lease_ttl_s):
            self.state.sender_until = 0.0
            self.state.sender_since = None
            return False
        if not held:
            # Read after the ledger granted it: not before the previous holder's expiry.
            self.state.sender_since = time.time()
        self.state.sender_until = asked_at + self.lease_ttl_s
        return True

    def release(self) -> None:
        """Give the lease up at a clean stop, so a standby agent need not wait for it."""
        self.state.sender_until = 0.0
        self.state.sender_since = None
        self.ledger.release_sender_lease(self.lease_holder)

    def push_once(self) -> bool:
        """Send one batch. True if it was acknowledged and more may be waiting."""
        pending = self.ledger.pending_bodies(self.state.batch_limit, max_bytes=self.max_batch_bytes)
        if not pending:
            return False
        sent_at = time.time()
        # One id per push, sent as X-Request-ID: central logs it and writes it into the
        # audit log, so this push's lines here and there can be found together.
        request_id = uuid7().hex
        self.state.last_request_id = request_id
        try:
            response = self.client.post(
                PUSH_PATH,
                content=self._batch_json(pending),
                headers={"content-type": "application/json", REQUEST_ID_HEADER: request_id},
            )
        except httpx.HTTPError as exc:
            self._failed(
                f"central unreachable: {describe_transport_error(exc)}", request_id=request_id
            )
            return False
        if self._go_again_at_once(response, pending):
            return True
        if response.status_code != 200:
            reason = f"central answered {response.status_code}: {response.text[:300]}"
            # After a 401 the auth flow already fetched a fresh token and retried, so this
            # is the credential itself (missing, wrong, revoked) or a site id mixup.
            # Retrying with backoff is still right (an operator may fix it meanwhile).
            auth_failed = response.status_code in (401, 403)
            # A busy central (503, 429) says when to come back; nothing of the batch was
            # stored, so it is sent again unchanged then.
            wait = (
                retry_after_s(response.headers.get("retry-after"))
                if response.status_code in (429, 503)
                else None
            )
            self._failed(
                reason,
                alert=_CREDENTIAL_ALERT if auth_failed else None,
                at_least_s=wait,
                request_id=request_id,
            )
            return False
        try:
            ack = PushAck.model_validate_json(response.content)
        except ValidationError as exc:
            self._failed(f"central's answer is not a push ack: {exc}")
            return False
        first, last = pending[0].event.seq, pending[-1].event.seq
        settled_through, refused = _settled(ack, first, min(last, ack.acked_through_seq))
        marked = 0
        if settled_through >= first:
            marked = self.ledger.apply_ack(first, settled_through, refused=refused)
        self._succeeded(ack, sent_at, marked)
        return settled_through >= last

    def _go_again_at_once(self, response: httpx.Response, pending: list[PendingEvent]) -> bool:
        """Whether a refusal is one the next push fixes by itself, changed accordingly."""
        if response.status_code == 413 and self.state.batch_limit > 1:
            # Something between us and central caps the body: halve and go again at once.
            self.state.batch_limit = max(1, len(pending) // 2)
            log.warning(
                "batch too large for central, halving",
                extra={"site": self.ledger.site_id, "batch_limit": self.state.batch_limit},
            )
            return True
        # A gap: central may hold less than it acknowledged; replay from where it stands.
        return response.status_code == 409 and self._rewind_if_central_lost(pending[0].event.seq)

    def _rewind_if_central_lost(self, first_pending: int) -> bool:
        """After a 409: if central holds less of the ledger than it acknowledged before
        (restored from an older backup), queue the rest again; True if it did.

        The gap answer alone is not trusted for the position: central's watermark is read
        from ``GET /sync/ack`` (404 there means central has nothing of this site at all).
        """
        try:
            answer = self.client.get(SYNC_ACK, params={"site_id": self.ledger.site_id})
        except httpx.HTTPError:
            return False
        if answer.status_code == 404:
            holds = 0
        elif answer.status_code == 200:
            try:
                holds = int(answer.json()["acked_through_seq"])
            except (ValueError, KeyError, TypeError):
                return False
        else:
            return False
        if holds >= first_pending - 1:
            return False  # central is not behind: the 409 is about something else
        requeued = self.ledger.rewind(holds)
        self.state.rewinds += 1
        return bool(requeued)

    def _batch_json(self, pending: list[PendingEvent]) -> bytes:
        """A :class:`~jxc.contract.PushBatch` built from the stored bodies, unchanged."""
        head = json.dumps({"contract_version": CONTRACT_VERSION, "site_id": self.ledger.site_id})
        events = ",".join(p.body for p in pending)
        return f'{head[:-1]},"events":[{events}]}}'.encode()

    def _succeeded(self, ack: PushAck, sent_at: float, marked: int) -> None:
        state = self.state
        state.last_success_at = datetime.now(UTC)
        state.last_error = None
        state.consecutive_failures = 0
        state.alerts = [a for a in state.alerts if not a.startswith(_CREDENTIAL_ALERT)]
        self.backoff.succeeded()
        state.events_pushed += marked
        state.batches_sent += 1
        # After a 413, grow back towards the configured size one success at a time.
        state.batch_limit = min(self.batch_size, state.batch_limit * 2)
        # Midpoint of the request against central's clock: good to half the round trip.
        midpoint = (sent_at + time.time()) / 2
        state.clock_skew_s = round(midpoint - ack.server_time.timestamp(), 3)
        self._check_skew(state.clock_skew_s)
        for result in ack.results:
            if result.status in _REFUSED:
                state.rejected[result.status.value] = state.rejected.get(result.status.value, 0) + 1
                log.error(
                    "central refused an event; it is a dead letter now (jxc edge outbox dead)",
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
                "request_id": self.state.last_request_id,
            },
        )

    def _check_skew(self, skew_s: float) -> None:
        """Edge timestamps feed valuation order; a clock far off central's must be seen."""
        alert = f"clock skew {skew_s:+.1f} s against central exceeds {self.max_clock_skew_s} s"
        self.state.alerts = [a for a in self.state.alerts if not a.startswith("clock skew")]
        if abs(skew_s) > self.max_clock_skew_s:
            self.state.alerts.append(alert)
            log.error(alert, extra={"site": self.ledger.site_id, "clock_skew_s": skew_s})

    def _failed(
        self,
        reason: str,
        *,
        alert: str | None = None,
        at_least_s: float | None = None,
        request_id: str | None = None,
    ) -> None:
        state = self.state
        state.last_error = reason
        if alert is not None and not any(a.startswith(alert) for a in state.alerts):
            state.alerts.append(f"{alert}: fix the site secret (see last_error)")
        delay = self.backoff.failed(at_least_s=at_least_s)
        state.consecutive_failures = self.backoff.failures
        log.warning(
            "push failed",
            extra={
                "site": self.ledger.site_id,
                "reason": reason,
                "failures": state.consecutive_failures,
                "retry_in_s": round(delay, 3),
                "request_id": request_id,
            },
        )
