"""A scale speaking the Toledo 8217 protocol (``W`` in, one weight frame out), as the POS
scales behind Odoo's IoT box do, over a serial port or a TCP bridge.

The driver moves requests and replies and keeps the device's health; what the bytes mean is
:mod:`device_drivers.scales.toledo8217`, how they travel is
:mod:`device_drivers.scales.transport`, and connection state, backoff and counters are the
shared :class:`~device_drivers.link.LinkHealth`. It opens the port lazily and, after the
device goes away, reopens it with backoff from inside the next call, so a scale power-cycled
mid-shift comes back on its own.

Three things differ from MT-SICS and shape the code:

- A reply names no request. A reply that comes after its request timed out would look like
  the answer to the next ``W``: a weight from the past. So after an unanswered ``W`` the
  driver owes the device a reply, and before the next ``W`` it waits for that late reply (and
  drops it) for up to ``late_reply_grace`` seconds.
- The device's own stable flag is the reply's shape: a scale in motion answers
  ``STX ? <status> CR`` with the motion bit instead of a weight, so every weight frame is a
  still weight and :meth:`Toledo8217Scale.read_now` cannot show a moving one (it raises
  :class:`~device_drivers.scales.errors.ScaleMotionError`). ``consecutive`` mode adds the
  N-readings-within-one-division check for indicators whose motion filter is set too eager.
- The frame carries no unit; ``unit`` in the configuration says what the indicator is set
  to, and :meth:`~device_drivers.scales.base.WeightReading.net_in` converts from there.

Zero, tare and clear-tare are not part of the protocol as documented in ``PROTOCOLS.md``
(only ``W`` is), so those methods answer with a ``syntax`` command error instead of sending
bytes whose effect nobody has verified; do them on the indicator's keypad.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TypeVar, get_args
from urllib.parse import urlsplit

from device_drivers.errors import DeviceConfigError
from device_drivers.link import LinkHealth
from device_drivers.options import config_from_options
from device_drivers.scales.base import GRAMS_PER_UNIT, ScaleErrorReason, Weight, WeightReading
from device_drivers.scales.errors import (
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.mtsics_scale import StableMode
from device_drivers.scales.toledo8217 import (
    STX,
    WEIGHT_REQUEST,
    DiscardedFrame,
    FrameFramer,
    Reply,
    StatusReply,
    Toledo8217CodecError,
    Toledo8217Status,
    WeightReply,
    parse_frame,
)
from device_drivers.scales.transport import ByteTransport, Parity, SerialTransport, TcpTransport
from device_drivers.status import DeviceStatus

__all__ = [
    "ScaleGarbledReplyError",
    "Toledo8217Scale",
    "Toledo8217ScaleConfig",
    "create_toledo8217_scale",
]

log = logging.getLogger("device_drivers.scale")

_DEGRADED_AFTER_DISCARDS = 3
"""Unreadable frames in a row before a connected scale counts as degraded: one is noise, a
run of them is a wrong baud rate, wrong parity or a bad cable."""

_DEGRADED_AFTER_TIMEOUTS = 2
"""Unanswered requests in a row before an open port counts as degraded: the port (or the
bridge) is there but the scale behind it is off or unplugged."""

_MAX_DRAIN_READS = 64
"""Reads of leftovers before a request; bounds the drain when a device streams on its own."""

_OUTCOME_REASONS = frozenset({"overload", "underload", "motion", "busy", "syntax"})
"""Reasons counted when a public method gives up with them. Timeouts, garbage and lost
connections are counted where they happen instead, once per occurrence or outage."""

_TCP_SCHEME = "tcp://"

_R = TypeVar("_R")


class ScaleGarbledReplyError(ScaleError):
    """The scale answered, but the reply was damaged (cut short, or not a valid frame).

    Already counted as ``garbage`` or ``half_line`` where it was seen; asking again usually
    works, so a stable read retries it.
    """

    default_reason = "garbage"
    retryable = True


@dataclass(frozen=True, slots=True)
class _Damaged:
    """A frame that started (STX) and did not hold up: the reply, broken on the way."""


def _last_digit(value: Decimal) -> Decimal:
    """One unit in the last printed place: what the scale displays is its division."""
    exponent = value.as_tuple().exponent
    return Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)


@dataclass(frozen=True, slots=True)
class Toledo8217ScaleConfig:
    """How one 8217 scale is reached and how patient to be with it.

    ``address`` is a serial port (a stable ``/dev/serial/by-id/...`` name, not
    ``/dev/ttyUSB0``, which renumbers after a reboot) or ``tcp://host:port`` for a serial
    device server. The serial defaults are the protocol's: 9600 baud, 7 data bits, even
    parity, 1 stop bit. ``unit`` is what the indicator is set to weigh in, since the frame
    does not say. ``division`` is the scale's ``d``; left out, it is taken from the number of
    decimals in each reading. ``late_reply_grace`` (default: ``reply_timeout``) is how long a
    reply owed by an unanswered request is waited for before the next request goes out.
    """

    device_id: str
    address: str | os.PathLike[str]
    unit: str = "kg"
    baudrate: int = 9600
    bytesize: int = 7
    parity: Parity = "E"
    stopbits: int = 1
    reply_timeout: float = 1.0
    stable_mode: StableMode = "device"
    stable_readings: int = 3
    division: Decimal | None = None
    poll_interval: float = 0.05
    half_line_timeout: float = 0.2
    late_reply_grace: float | None = None
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 2.0

    def __post_init__(self) -> None:
        name = self.device_id
        if not name:
            raise DeviceConfigError("device_id must not be empty")
        if not os.fspath(self.address):
            raise DeviceConfigError(f"{name}: address must not be empty")
        if self.tcp_endpoint() is None and os.fspath(self.address).startswith(_TCP_SCHEME):
            raise DeviceConfigError(f"{name}: want tcp://host:port, got {self.address!r}")
        if self.unit not in GRAMS_PER_UNIT:
            raise DeviceConfigError(
                f"{name}: unit must be one of {', '.join(GRAMS_PER_UNIT)}, got {self.unit!r}"
            )
        if self.baudrate <= 0 or self.bytesize not in (5, 6, 7, 8) or self.stopbits not in (1, 2):
            raise DeviceConfigError(f"{name}: impossible serial settings")
        if self.parity not in get_args(Parity):
            raise DeviceConfigError(f"{name}: parity must be N, E or O, got {self.parity!r}")
        if self.stable_mode not in get_args(StableMode):
            raise DeviceConfigError(
                f"{name}: stable_mode must be device or consecutive, got {self.stable_mode!r}"
            )
        if self.stable_readings < 2:
            raise DeviceConfigError(f"{name}: stable_readings must be at least 2")
        if self.division is not None and not (
            isinstance(self.division, Decimal) and self.division.is_finite() and self.division > 0
        ):
            raise DeviceConfigError(f"{name}: division must be a positive decimal weight")
        if min(self.reply_timeout, self.poll_interval, self.half_line_timeout) <= 0:
            raise DeviceConfigError(
                f"{name}: reply_timeout, poll_interval and half_line_timeout must be positive"
            )
        if self.late_reply_grace is not None and self.late_reply_grace < 0:
            raise DeviceConfigError(f"{name}: late_reply_grace must not be negative")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise DeviceConfigError(f"{name}: need 0 < reconnect_min_delay <= reconnect_max_delay")

    @property
    def grace(self) -> float:
        """How long an owed reply is waited for before the next request."""
        return self.reply_timeout if self.late_reply_grace is None else self.late_reply_grace

    def tcp_endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` when the address is a TCP bridge, ``None`` for a serial port."""
        address = os.fspath(self.address)
        if not address.startswith(_TCP_SCHEME):
            return None
        try:
            parts = urlsplit(address)
            port = parts.port
        except ValueError:
            return None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            return None
        return parts.hostname, port

    def make_transport(self) -> ByteTransport:
        """The transport this address calls for."""
        endpoint = self.tcp_endpoint()
        if endpoint is not None:
            return TcpTransport(*endpoint, connect_timeout=self.reply_timeout)
        return SerialTransport(
            self.address,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            write_timeout=self.reply_timeout,
        )


class Toledo8217Scale:
    """:class:`~device_drivers.scales.base.Scale` for Toledo 8217 devices.

    Call the weighing methods from one thread (the station loop); ``status`` and ``close``
    are safe from any other, so a status page can look and shutdown can interrupt a read.
    """

    def __init__(
        self, config: Toledo8217ScaleConfig, *, transport: ByteTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport if transport is not None else config.make_transport()
        self._framer = self._new_framer()
        self._replies: deque[tuple[Reply | _Damaged, datetime.datetime]] = deque()
        self._io_lock = threading.Lock()
        self._closing = threading.Event()
        self._is_open = False
        self._owed_until: float | None = None
        self._link = LinkHealth(
            config.device_id,
            kind="scale",
            reasons=get_args(ScaleErrorReason),
            min_delay=config.reconnect_min_delay,
            max_delay=config.reconnect_max_delay,
            logger=log,
        )
        self._link.io_detail = f"{self._transport.name} not opened yet"
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0

    def __enter__(self) -> Toledo8217Scale:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the Scale interface -------------------------------------------------------------

    def read_stable(self, timeout: float) -> WeightReading:
        """A weight that holds still, within ``timeout`` seconds.

        Overload, underload and a bad command end the wait at once: waiting does not cure
        them. Motion, a damaged or missing reply and a lost link are retried until the time
        is up and then raised as what was seen last, so the station can say what to fix.
        """
        return self._locked(lambda: self._read_stable(max(timeout, 0.0)))

    def read_now(self) -> WeightReading:
        """What the scale gives right now; a scale in motion gives no weight, and this raises
        :class:`~device_drivers.scales.errors.ScaleMotionError` then."""

        def read() -> WeightReading:
            reply, read_at = self._weigh(self.config.reply_timeout, count_timeout=True)
            return self._reading(reply, read_at)

        return self._locked(read)

    def zero(self, timeout: float = 5.0) -> None:
        """Not in the protocol as documented; zero on the keypad."""
        raise self._unsupported("Z (zero)")

    def tare(self, timeout: float = 5.0) -> Weight:
        """Not in the protocol as documented; tare on the keypad (readings then say net)."""
        raise self._unsupported("T (tare)")

    def clear_tare(self) -> None:
        """Not in the protocol as documented; clear the tare on the keypad."""
        raise self._unsupported("C (clear tare)")

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

    # -- weighing ----------------------------------------------------------------------------

    def _read_stable(self, timeout: float) -> WeightReading:
        deadline = time.monotonic() + timeout
        run: list[WeightReply] = []
        last_problem: ScaleError | None = None
        first = True
        while True:
            count_timeout = False
            try:
                # Reconnecting (and waiting out a late reply) first, against the whole
                # deadline, so that time is not taken from the wait for the reply.
                self._prepare(deadline)
                # A poll cut short by the caller's deadline is not evidence of a silent
                # device, unless it is the only poll there is.
                wait = min(self.config.reply_timeout, max(deadline - time.monotonic(), 0.0))
                count_timeout, first = first or wait >= self.config.reply_timeout, False
                reply, read_at = self._weigh(wait, count_timeout=count_timeout)
            except (ScaleOverloadError, ScaleUnderloadError, ScaleCommandError):
                raise
            except (ScaleMotionError, ScaleBusyError, ScaleGarbledReplyError) as exc:
                last_problem, run = exc, []
            except ScaleUnavailableError as exc:
                if self._closing.is_set():
                    raise
                last_problem, run = exc, []
            except ScaleTimeoutError as exc:
                if not count_timeout:
                    # The deadline cut this poll short: what was seen before stands, and
                    # if nothing was, the scale did not answer in time.
                    if last_problem is None and not run:
                        last_problem = exc
                    break
                last_problem, run = exc, []
            else:
                last_problem = None
                if self._settled(run, reply):
                    return self._reading(reply, read_at)
            pause = min(self.config.poll_interval, deadline - time.monotonic())
            if pause <= 0 or self._closing.wait(pause):
                break
        raise self._gave_up(last_problem, timeout)

    def _gave_up(self, last_problem: ScaleError | None, timeout: float) -> ScaleError:
        """What a stable read that ran out of time raises: what was seen last, in words
        a station can act on."""
        if self._closing.is_set():
            return ScaleUnavailableError(self.config.device_id, "closed")
        if last_problem is None or isinstance(last_problem, ScaleMotionError):
            return ScaleMotionError(self.config.device_id, f"no stable weight within {timeout:g} s")
        return last_problem

    def _settled(self, run: list[WeightReply], reply: WeightReply) -> bool:
        if self.config.stable_mode == "device":
            return True
        if run and run[-1].net != reply.net:
            run.clear()  # a tare came or went: not the same weighing
        run.append(reply)
        division = self.config.division or _last_digit(reply.value)
        while max(r.value for r in run) - min(r.value for r in run) > division:
            run.pop(0)
        if len(run) > self.config.stable_readings:
            run.pop(0)
        return len(run) >= self.config.stable_readings

    def _weigh(
        self, timeout: float, *, count_timeout: bool
    ) -> tuple[WeightReply, datetime.datetime]:
        reply, read_at = self._exchange(timeout, count_timeout=count_timeout)
        if isinstance(reply, WeightReply):
            return reply, read_at
        raise self._refusal(reply)

    def _reading(self, reply: WeightReply, read_at: datetime.datetime) -> WeightReading:
        # Without N the scale says no tare is in force, so the weight is the gross one and
        # the tare is zero: learned from the frame, not guessed. With N the tare is unknown.
        zero = Decimal(0).scaleb(_exponent(reply.value))
        return WeightReading(
            device_id=self.config.device_id,
            net=reply.value,
            gross=None if reply.net else reply.value,
            tare=None if reply.net else zero,
            unit=self.config.unit,
            stable=True,
            raw=reply.raw,
            read_at=read_at,
        )

    def _refusal(self, reply: StatusReply) -> ScaleError:
        """The typed error for a status reply, most serious first."""
        device_id, status, what = self.config.device_id, reply.status, reply.describe()
        if Toledo8217Status.BAD_COMMAND in status:
            return ScaleCommandError(device_id, "ES", WEIGHT_REQUEST.decode())
        if Toledo8217Status.OVER_CAPACITY in status:
            return ScaleOverloadError(device_id, f"weight: {what}")
        if Toledo8217Status.UNDER_ZERO in status:
            return ScaleUnderloadError(device_id, f"weight: {what}")
        if Toledo8217Status.MOTION in status:
            return ScaleMotionError(device_id, f"weight: {what}")
        return ScaleBusyError(device_id, f"no weight given: {what}")

    def _unsupported(self, command: str) -> ScaleCommandError:
        # Not counted: the device did nothing wrong, the caller asked for what it lacks.
        return ScaleCommandError(
            self.config.device_id, "ES", f"{command}, not in the 8217 protocol: use the keypad"
        )

    # -- one exchange ------------------------------------------------------------------------

    def _exchange(self, timeout: float, *, count_timeout: bool) -> tuple[Reply, datetime.datetime]:
        """Send ``W`` and wait for its one reply frame."""
        self._prepare(time.monotonic() + timeout + self.config.grace)
        deadline = time.monotonic() + timeout
        self._discard_leftovers()
        self._send(WEIGHT_REQUEST)
        sent_at = time.monotonic()
        while True:
            item = self._next_reply(deadline)
            if item is None:
                self._owed_until = sent_at + self.config.reply_timeout + self.config.grace
                raise self._unanswered(timeout, counted=count_timeout)
            reply, read_at = item
            if isinstance(reply, _Damaged):
                raise ScaleGarbledReplyError(self.config.device_id, "damaged reply to W")
            self._answered()
            return reply, read_at

    def _prepare(self, deadline: float) -> None:
        """Connect, then drop the late reply to a ``W`` that timed out (or give up on it).

        Without the second step a late weight would be read as the answer to the next
        request: a weight from the past, and in ``consecutive`` mode one that could complete
        a stable run. Waiting for it is the driver's caution, not the device's silence, so
        running out of time here raises a timeout that is not counted.
        """
        self._connect(deadline)
        owed_until = self._owed_until
        if owed_until is None:
            return
        item = self._next_reply(min(deadline, owed_until))
        if item is None and time.monotonic() < owed_until:
            raise ScaleTimeoutError(self.config.device_id, "a late reply is still owed")
        # Either the late reply came (dropped here) or the device swallowed that request.
        self._owed_until = None
        if item is not None:
            log.info(
                "scale: dropped a late reply %r",
                getattr(item[0], "raw", b""),
                extra={"device": self.config.device_id, "event": "late_reply"},
            )

    def _send(self, data: bytes) -> None:
        try:
            self._transport.write(data)
        except OSError as exc:
            raise self._lost(exc) from None

    def _next_reply(self, deadline: float) -> tuple[Reply | _Damaged, datetime.datetime] | None:
        """The next frame (or damaged frame), or ``None`` once ``deadline`` passes."""
        while True:
            if self._replies:
                return self._replies.popleft()
            now = time.monotonic()
            if self._closing.is_set():
                raise ScaleUnavailableError(self.config.device_id, "closed")
            if now >= deadline:
                return None
            wake_at = deadline
            pending = self._framer.deadline()
            if pending is not None:
                wake_at = min(wake_at, pending)  # in time to call a partial frame a half one
            self._receive(max(wake_at - now, 0.0))

    def _receive(self, wait: float) -> bool:
        """Read once, waiting up to ``wait``; ``True`` if any bytes arrived."""
        try:
            chunk = self._transport.read(wait)
        except OSError as exc:
            raise self._lost(exc) from None
        now = time.monotonic()
        read_at = datetime.datetime.now(datetime.UTC)
        if chunk:
            self._link.data_arrived()
        events = self._framer.feed(chunk, now) if chunk else self._framer.expire(now)
        self._take(events, read_at)
        return bool(chunk)

    def _take(self, events: list[bytes | DiscardedFrame], read_at: datetime.datetime) -> None:
        for event in events:
            if isinstance(event, DiscardedFrame):
                self._discarded(event.reason, event.sample, detail="bytes discarded")
                if event.sample[:1] == bytes([STX]):
                    self._replies.append((_Damaged(), read_at))
                continue
            try:
                reply = parse_frame(event)
            except Toledo8217CodecError as exc:
                self._discarded("garbage", event, detail=exc.detail)
                self._replies.append((_Damaged(), read_at))
            else:
                self._replies.append((reply, read_at))

    def _discard_leftovers(self) -> None:
        """Throw away whatever is left from earlier exchanges before a new request."""
        for _ in range(_MAX_DRAIN_READS):
            if not self._receive(0.0):
                break
        self._take(self._framer.flush(), datetime.datetime.now(datetime.UTC))
        while self._replies:
            reply, _ = self._replies.popleft()
            if not isinstance(reply, _Damaged):
                log.info(
                    "scale: dropped an unrequested reply %r",
                    reply.raw,
                    extra={"device": self.config.device_id, "event": "late_reply"},
                )

    # -- connection ----------------------------------------------------------------------------

    def _connect(self, deadline: float) -> None:
        while not self._is_open:
            if self._closing.is_set():
                raise ScaleUnavailableError(self.config.device_id, "closed")
            now = time.monotonic()
            if self._link.may_attempt(now):
                try:
                    self._transport.open()
                except Exception as exc:
                    # Not only OSError: pyserial lets termios.error through when the port
                    # refuses the settings (a pty refuses 7E1), and the caller must never
                    # see that as a crash, only as a scale that is not available.
                    self._link.open_failed(now, f"cannot open {self._transport.name}: {exc}")
                else:
                    self._opened(now)
                    return
            if self._link.next_attempt_at >= deadline:
                raise ScaleUnavailableError(self.config.device_id, self._link.io_detail)
            self._closing.wait(max(self._link.next_attempt_at - time.monotonic(), 0.0))

    def _opened(self, now: float) -> None:
        self._is_open = True
        self._framer = self._new_framer()  # bytes from before the outage are not a reply
        self._replies.clear()
        self._owed_until = None  # a new link owes nothing
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._link.opened(now, self._transport.name)

    def _lost(self, exc: OSError) -> ScaleUnavailableError:
        self._transport.close()
        self._is_open = False
        if self._closing.is_set():
            return ScaleUnavailableError(self.config.device_id, "closed")
        detail = f"lost {self._transport.name}: {exc}"
        self._link.lost(time.monotonic(), detail)
        return ScaleUnavailableError(self.config.device_id, detail)

    def _new_framer(self) -> FrameFramer:
        return FrameFramer(half_line_timeout=self.config.half_line_timeout)

    # -- accounting ------------------------------------------------------------------------------

    def _locked(self, call: Callable[[], _R]) -> _R:
        """Run one public operation under the I/O lock and count the outcome if it failed."""
        with self._io_lock:
            try:
                return call()
            except ScaleError as exc:
                if exc.reason in _OUTCOME_REASONS:
                    self._count(exc.reason, exc.detail)
                raise

    def _answered(self) -> None:
        self._discards_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._link.answered()

    def _unanswered(self, timeout: float, *, counted: bool) -> ScaleTimeoutError:
        detail = f"no reply to W within {timeout:g} s"
        if counted:
            self._timeouts_in_a_row += 1
            self._count("timeout", detail)
            if self._timeouts_in_a_row >= _DEGRADED_AFTER_TIMEOUTS:
                self._link.degrade()
        return ScaleTimeoutError(self.config.device_id, detail)

    def _discarded(self, reason: str, sample: bytes, *, detail: str) -> None:
        self._discards_in_a_row += 1
        self._count(reason, detail, sample=sample)
        if self._discards_in_a_row >= _DEGRADED_AFTER_DISCARDS:
            self._link.degrade()

    def _count(self, reason: str, detail: str, *, sample: bytes | None = None) -> None:
        self._link.count(reason, detail)
        extra: dict[str, object] = {"device": self.config.device_id, "reason": reason}
        if sample is not None:
            extra["sample"] = repr(sample)
        log.warning("scale: %s (%s)", detail, reason, extra=extra)


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


_NUMBER_OPTIONS = frozenset(
    {
        "reply_timeout",
        "poll_interval",
        "half_line_timeout",
        "late_reply_grace",
        "reconnect_min_delay",
        "reconnect_max_delay",
    }
)
_INTEGER_OPTIONS = frozenset({"baudrate", "bytesize", "stopbits", "stable_readings"})
_TEXT_OPTIONS = frozenset({"address", "unit", "parity", "stable_mode"})


def create_toledo8217_scale(device_id: str, options: Mapping[str, object]) -> Toledo8217Scale:
    """The entry point: a site file's scale section to a driver.

    Options are :class:`Toledo8217ScaleConfig`'s fields. An unknown or mistyped one is a
    :class:`DeviceConfigError` naming it, so a typo in the site file fails at start-up. The
    division must be written as a string or an integer (``division = "0.005"``): a TOML
    float is a binary float, and a division that is not exactly what the label says would
    make a stable run of readings that are not.
    """
    config = config_from_options(
        Toledo8217ScaleConfig, device_id, options, driver="toledo-8217", required=("address",)
    )
    return Toledo8217Scale(config)


def _option(device_id: str, name: str, value: object) -> object:
    if name == "division":
        if isinstance(value, Decimal):
            return value
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            try:
                return Decimal(value)
            except InvalidOperation:
                pass
        raise DeviceConfigError(
            f'{device_id}: division must be a decimal written as a string, e.g. "0.005"'
        )
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if name in _NUMBER_OPTIONS and (is_number or (value is None and name == "late_reply_grace")):
        return value
    if name in _INTEGER_OPTIONS and isinstance(value, int) and not isinstance(value, bool):
        return value
    if name in _TEXT_OPTIONS and isinstance(value, str):
        return value
    kind = "a number" if name in _NUMBER_OPTIONS | _INTEGER_OPTIONS else "a string"
    raise DeviceConfigError(f"{device_id}: {name} must be {kind}, got {value!r}")
