"""What the scales that speak lines over a byte transport (MT-SICS, Toledo 8217) share.

Both drivers open a :class:`~device_drivers.transport.ByteTransport` lazily and
reopen it with backoff from inside the next call, frame what arrives, and keep the same
health accounting: a timeout or a run of unreadable lines degrades a connected scale, a lost
port is one outage, a failed public call is counted under its reason. That is
:class:`LineScale`, once. A protocol subclass supplies its framer, what to do with the
framer's events, and what state an exchange leaves behind that a new link must forget.

They also share how a failed call is put to the engineer. Inside one call a silent scale
and one answering noise both end in a timeout on whatever request was last on the wire,
often one the driver sent on its own (the fence before a new command); so the call keeps
a tally of what came back, and a timeout leaving it is said by what happened: nothing at
all (cable, port, power), or only unreadable replies, counted (baud rate, parity).
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, Protocol, Self, TypeVar

from device_drivers.port_errors import line_settings_text, port_error_text, refuses_line_settings
from device_drivers.scales.config import LineSettings, tcp_endpoint
from device_drivers.scales.errors import (
    ScalePortSettingsError,
    ScaleTimeoutError,
    ScaleUnavailableError,
)
from device_drivers.scales.health import count_problem, counting_outcome, scale_link
from device_drivers.status import DeviceStatus
from device_drivers.transport import ByteTransport

__all__ = ["LineScale", "LineScaleConfig"]

_DEGRADED_AFTER_DISCARDS = 3
"""Unreadable lines or frames in a row before a connected scale counts as degraded: one is
noise, a run of them is a wrong baud rate or parity, or a bad cable."""

_DEGRADED_AFTER_TIMEOUTS = 2
"""Unanswered requests in a row before an open port counts as degraded: the port (or the
TCP bridge) is there but the scale behind it is off or unplugged."""

_MAX_DRAIN_READS = 64
"""Reads of leftovers before a request; bounds the drain when a device streams on its own."""

_E = TypeVar("_E")
_E_co = TypeVar("_E_co", covariant=True)
_R = TypeVar("_R")


class LineScaleConfig(LineSettings, Protocol):
    """The part of a line scale's config the shared code reads (the line settings, too, to
    name them when a port refuses them or a scale answers in noise)."""

    @property
    def device_id(self) -> str: ...

    @property
    def reconnect_min_delay(self) -> float: ...

    @property
    def reconnect_max_delay(self) -> float: ...

    def make_transport(self) -> ByteTransport: ...


_C = TypeVar("_C", bound=LineScaleConfig)


@dataclass
class _CallTally:
    """What came back during one public call, to say why it failed in plain words."""

    started: float
    bytes: int = 0
    unreadable: int = 0
    answers: int = 0


class Framer(Protocol[_E_co]):
    """A protocol's framer: bytes in, complete lines or frames (or discards) out."""

    def feed(self, data: bytes, now: float) -> Sequence[_E_co]: ...

    def expire(self, now: float) -> Sequence[_E_co]: ...

    def flush(self) -> Sequence[_E_co]: ...

    def deadline(self) -> float | None: ...


class LineScale(Generic[_C, _E]):
    """Transport, link and accounting of a scale that speaks lines over a byte transport.

    ``_E`` is the type of the framer's events. Call the weighing methods from one thread
    (the station loop); ``status`` and ``close`` are safe from any other, so a status page
    can look and shutdown can interrupt a read.
    """

    _outcome_reasons: ClassVar[frozenset[str]]
    """Reasons counted when a public method gives up with them. Timeouts, garbage and lost
    connections are counted where they happen instead, once per occurrence or outage."""

    _open_errors: ClassVar[tuple[type[Exception], ...]] = (OSError,)
    """What a failed ``transport.open()`` may raise and still be an unavailable scale."""

    def __init__(self, config: _C, transport: ByteTransport | None) -> None:
        self.config = config
        self._transport = transport if transport is not None else config.make_transport()
        self._framer = self._new_framer()
        self._io_lock = threading.Lock()
        self._closing = threading.Event()
        self._is_open = False
        self._link = scale_link(
            config.device_id,
            min_delay=config.reconnect_min_delay,
            max_delay=config.reconnect_max_delay,
            not_yet=f"{self._transport.name} not opened yet",
        )
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._tally = _CallTally(time.monotonic())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def status(self) -> DeviceStatus:
        """A snapshot, consistent even while another thread is weighing."""
        return self._link.snapshot()

    def close(self) -> None:
        """Release the port for good; a call in progress ends promptly with an error."""
        self._closing.set()
        self._transport.interrupt()
        with self._io_lock:
            self._transport.close()
            self._is_open = False
            self._link.closed()

    # -- protocol hooks ------------------------------------------------------------------

    def _new_framer(self) -> Framer[_E]:
        raise NotImplementedError

    def _take(self, events: Sequence[_E], read_at: datetime.datetime) -> None:
        """Queue (or count as discarded) what the framer produced."""
        raise NotImplementedError

    def _drop_queued(self) -> None:
        """Before a new request: drop what is queued, logging what was a reply."""
        raise NotImplementedError

    def _forget_exchange(self) -> None:
        """A new link: nothing queued or owed from before the outage is a reply."""
        raise NotImplementedError

    # -- bytes ---------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            self._transport.write(data)
        except OSError as exc:
            raise self._lost(exc) from None

    def _await(self, deadline: float, pick: Callable[[], _R]) -> _R:
        """What ``pick`` takes from the queue, reading as needed until it takes something
        other than ``None``, or ``None`` once ``deadline`` passes."""
        while True:
            found = pick()
            if found is not None:
                return found
            now = time.monotonic()
            if self._closing.is_set():
                raise ScaleUnavailableError(self.config.device_id, "closed")
            if now >= deadline:
                return found  # None: nothing came in time
            self._receive(self._read_wait(now, deadline))

    def _read_wait(self, now: float, deadline: float) -> float:
        # Wake in time to declare a pending partial line a half line.
        wake_at = deadline
        half_line_at = self._framer.deadline()
        if half_line_at is not None:
            wake_at = min(wake_at, half_line_at)
        return max(wake_at - now, 0.0)

    def _receive(self, wait: float) -> bool:
        """Read once, waiting up to ``wait``; ``True`` if any bytes arrived."""
        try:
            chunk = self._transport.read(wait)
        except OSError as exc:
            raise self._lost(exc) from None
        now = time.monotonic()
        read_at = datetime.datetime.now(datetime.UTC)
        if chunk:
            self._tally.bytes += len(chunk)
            self._link.data_arrived()
        events = self._framer.feed(chunk, now) if chunk else self._framer.expire(now)
        self._take(events, read_at)
        return bool(chunk)

    def _discard_leftovers(self) -> None:
        """Throw away whatever is left from earlier exchanges before a new request."""
        for _ in range(_MAX_DRAIN_READS):
            if not self._receive(0.0):
                break
        self._take(self._framer.flush(), datetime.datetime.now(datetime.UTC))
        self._drop_queued()

    # -- connection ----------------------------------------------------------------------

    def _connect(self, deadline: float) -> None:
        while not self._is_open:
            if self._closing.is_set():
                raise ScaleUnavailableError(self.config.device_id, "closed")
            now = time.monotonic()
            if self._link.may_attempt(now):
                try:
                    self._transport.open()
                except self._open_errors as exc:
                    if refuses_line_settings(exc):
                        detail = self._settings_refused()
                        self._link.open_failed(now, detail)
                        raise ScalePortSettingsError(self.config.device_id, detail) from None
                    name = self._transport.name
                    self._link.open_failed(now, f"cannot open {name}: {port_error_text(exc)}")
                else:
                    self._opened(now)
                    return
            if self._link.next_attempt_at >= deadline:
                raise ScaleUnavailableError(self.config.device_id, self._link.io_detail)
            self._closing.wait(max(self._link.next_attempt_at - time.monotonic(), 0.0))

    def _opened(self, now: float) -> None:
        self._is_open = True
        self._framer = self._new_framer()  # bytes from before the outage are not a reply
        self._forget_exchange()
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._link.opened(now, self._transport.name)

    def _lost(self, exc: OSError) -> ScaleUnavailableError:
        self._transport.close()
        self._is_open = False
        if self._closing.is_set():
            return ScaleUnavailableError(self.config.device_id, "closed")
        if refuses_line_settings(exc):
            # A pty takes the first open at 7E1 and refuses the settings at the first read.
            detail = self._settings_refused()
            self._link.lost(time.monotonic(), detail)
            return ScalePortSettingsError(self.config.device_id, detail)
        detail = f"lost {self._transport.name}: {port_error_text(exc)}"
        self._link.lost(time.monotonic(), detail)
        return ScaleUnavailableError(self.config.device_id, detail)

    def _settings(self) -> str:
        config = self.config
        return line_settings_text(config.baudrate, config.bytesize, config.parity, config.stopbits)

    def _settings_refused(self) -> str:
        return (
            f"{self._transport.name} refuses the serial settings {self._settings()}: a "
            "pseudo-terminal (a jxc sim twin) takes only 8N1, so set bytesize = 8 and "
            'parity = "N" for it; a real port that refuses them needs another adapter'
        )

    # -- accounting ----------------------------------------------------------------------

    def _locked(self, call: Callable[[], _R], *, within: float | None = None) -> _R:
        """Run one public operation under the I/O lock and count the outcome if it failed.

        A timeout that ends it is said in the engineer's words (:meth:`_plain_timeout`);
        ``within`` is the patience the caller gave the whole call (the time it took if not
        given), since that, not one request's reply timeout, is what the engineer set.
        """
        with self._io_lock:
            self._tally = _CallTally(time.monotonic())
            try:
                with counting_outcome(self._link, self._outcome_reasons):
                    return call()
            except ScaleTimeoutError as exc:
                plain = self._plain_timeout(exc, within)
                if plain is exc:
                    raise
                raise plain from exc

    def _plain_timeout(self, exc: ScaleTimeoutError, within: float | None) -> ScaleTimeoutError:
        """What a call that timed out saw, in words: silence, or this many unreadable
        replies; a call that had good replies before it timed out keeps its own detail."""
        tally = self._tally
        if tally.answers:
            return exc
        seconds = within if within is not None else time.monotonic() - tally.started
        where = f"the scale on {self._transport.name}"
        if tally.unreadable:
            replies = "reply" if tally.unreadable == 1 else "replies"
            if tcp_endpoint(self.config.address) is None:
                settings = self._settings()
                check = f"check that its baud rate and parity match the site file's {settings}"
            else:
                check = "check the baud rate and parity set on the serial device server"
            detail = (
                f"{where} answered with {tally.unreadable} unreadable {replies} within "
                f"{seconds:.3g} s: {check} (7E1 vs 8N1 is the usual mix-up)"
            )
        elif tally.bytes:
            detail = (
                f"{where} sent {tally.bytes} bytes within {seconds:.3g} s but no complete "
                "reply: check its baud rate, parity and line end"
            )
        else:
            detail = f"no answer from {where} within {seconds:.3g} s: check cable, port and power"
        return ScaleTimeoutError(self.config.device_id, detail)

    def _answered(self) -> None:
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._tally.answers += 1
        self._link.answered()

    def _unanswered(self, request: str, timeout: float, *, counted: bool) -> ScaleTimeoutError:
        detail = f"no reply to {request} within {timeout:g} s"
        if counted:
            self._timeouts_in_a_row += 1
            self._count("timeout", detail)
            if self._timeouts_in_a_row >= _DEGRADED_AFTER_TIMEOUTS:
                self._link.degrade()
        return ScaleTimeoutError(self.config.device_id, detail)

    def _discarded(self, reason: str, sample: bytes, *, detail: str = "line discarded") -> None:
        self._discards_in_a_row += 1
        self._tally.unreadable += 1
        self._count(reason, detail, sample=sample)
        if self._discards_in_a_row >= _DEGRADED_AFTER_DISCARDS:
            self._link.degrade()

    def _count(self, reason: str, detail: str, *, sample: bytes | None = None) -> None:
        count_problem(self._link, reason, detail, sample=None if sample is None else repr(sample))
