"""The health of one device link: connection state, reconnect backoff and error counters.

Every driver must behave alike when its device disappears (cable pulled, power cycled):
retry with exponential backoff, count an outage once rather than once per retry, report
connected / degraded / disconnected, and keep counters that only grow. This is that
behaviour, once; a driver owns the transport and the protocol, and tells its
:class:`LinkHealth` what happened on the link.

The backoff rules:

* A failed open doubles the delay before the next attempt, up to ``max_delay``.
* Only a link that delivers data (:meth:`LinkHealth.data_arrived`) earns a fast retry
  next time; one that opens and dies at once keeps backing off instead of spinning.
* A link lost after it had been up at least ``max_delay`` retries after ``min_delay``:
  that is a new outage, not the same flapping one.

Counters and state are guarded by the object's own lock, so a status page may read them
from any thread while the driver's I/O thread writes; the backoff fields belong to the
I/O thread alone (drivers call them under their I/O lock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from device_drivers.status import DeviceState, DeviceStatus

__all__ = ["LinkHealth"]


class LinkHealth:
    """State, backoff and counters of one device's link; see the module docstring."""

    def __init__(
        self,
        device_id: str,
        *,
        kind: str,
        reasons: Iterable[str],
        min_delay: float,
        max_delay: float,
        logger: logging.Logger,
    ) -> None:
        self.device_id = device_id
        self.kind = kind
        """What the log lines call the device: ``scanner``, ``scale``, ``printer``."""
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.next_attempt_at = 0.0
        """``time.monotonic()`` before which the driver should not try to open again."""
        self.io_detail = "not opened yet"
        """Why the link is down, for the error a caller gets while it is."""
        self._log = logger
        self._lock = threading.Lock()
        self._retry_delay = min_delay
        self._connected_at = 0.0
        self._in_outage = False
        self._has_connected = False
        self._state: DeviceState = "disconnected"
        self._errors: dict[str, int] = dict.fromkeys(reasons, 0)
        self._errors.setdefault("io", 0)
        self._last_error: str | None = None
        self._reconnects = 0
        self._scans = 0

    # -- the I/O thread reports ------------------------------------------------------

    def may_attempt(self, now: float) -> bool:
        """Whether the backoff allows an open attempt at ``now``."""
        return now >= self.next_attempt_at

    def open_failed(self, now: float, detail: str, *, reason: str = "io") -> None:
        """An open attempt failed: back off further; count the outage if it is new.

        ``reason`` is the counter: ``io`` unless the driver knows better (``auth`` for a
        refused password, ``tls`` for a certificate it must not trust).
        """
        self.next_attempt_at = now + self._retry_delay
        self._retry_delay = min(self._retry_delay * 2, self.max_delay)
        self._down(detail, first_in_outage=not self._in_outage, reason=reason)
        self._in_outage = True

    def opened(self, now: float, where: str) -> None:
        """The link is up (again)."""
        self._in_outage = False
        self._connected_at = now
        with self._lock:
            if self._has_connected:
                self._reconnects += 1
            self._has_connected = True
            self._state = "connected"
        self._log.info(
            "%s connected on %s",
            self.kind,
            where,
            extra={"device": self.device_id, "event": "device_connected"},
        )

    def lost(self, now: float, detail: str) -> None:
        """A link that was up broke: schedule the reconnect and count the outage."""
        if now - self._connected_at >= self.max_delay:
            self._retry_delay = self.min_delay
        self.next_attempt_at = now + self._retry_delay
        self._in_outage = True  # the retries that follow belong to this outage
        self._down(detail, first_in_outage=True)

    def data_arrived(self) -> None:
        """The device sent something: the next outage starts with a fast retry."""
        self._retry_delay = self.min_delay

    def answered(self) -> None:
        """The device did its job (a good scan, a reply): it is connected, not degraded."""
        with self._lock:
            self._state = "connected"

    def scanned(self) -> None:
        """One good scan (scanners only): counted, and proof the link works."""
        with self._lock:
            self._scans += 1
            self._state = "connected"

    def count(self, reason: str, detail: str, *, degrade: bool = False) -> None:
        """One rejected reply, line or job; ``degrade`` marks a connected link degraded.

        The driver logs it, in its own words: only it knows what was rejected.
        """
        with self._lock:
            self._errors[reason] = self._errors.get(reason, 0) + 1
            self._last_error = f"{reason}: {detail}"
            if degrade and self._state == "connected":
                self._state = "degraded"

    def degrade(self) -> None:
        """Reachable but not useful (a run of garbage, of timeouts)."""
        with self._lock:
            if self._state == "connected":
                self._state = "degraded"

    def closed(self) -> None:
        """The driver released the link for good."""
        with self._lock:
            self._state = "disconnected"

    # -- anyone reads ------------------------------------------------------------------

    @property
    def state(self) -> DeviceState:
        with self._lock:
            return self._state

    def snapshot(self) -> DeviceStatus:
        """A consistent snapshot for a status page, safe from any thread."""
        with self._lock:
            return DeviceStatus(
                device_id=self.device_id,
                state=self._state,
                scans=self._scans,
                errors=dict(self._errors),
                last_error=self._last_error,
                reconnects=self._reconnects,
            )

    def _down(self, detail: str, *, first_in_outage: bool, reason: str = "io") -> None:
        # Count each outage once, not each retry: a device left off overnight should not
        # read as thousands of errors.
        self.io_detail = detail
        with self._lock:
            self._state = "disconnected"
            self._last_error = f"{reason}: {detail}"
            if first_in_outage:
                self._errors[reason] = self._errors.get(reason, 0) + 1
        if first_in_outage:
            self._log.warning(
                "%s unavailable: %s",
                self.kind,
                detail,
                extra={"device": self.device_id, "reason": reason},
            )
