"""A scale speaking the Toledo 8217 protocol (``W`` in, one weight frame out), as the POS
scales behind Odoo's IoT box do, over a serial port or a TCP bridge.

The driver moves requests and replies and keeps the device's health; what the bytes mean is
:mod:`device_drivers.scales.toledo8217`, how they travel is
:mod:`device_drivers.transport`, and connection state, backoff and counters are the
shared :class:`~device_drivers.link.LinkHealth`. It opens the port lazily and, after the
device goes away, reopens it with backoff from inside the next call, so a scale power-cycled
mid-shift comes back on its own.

Three things differ from MT-SICS and shape the code:

- A reply names no request. A reply that comes after its request timed out would look like
  the answer to the next ``W``: a weight from the past. So after an unanswered ``W`` the
  driver owes the device a reply, and before the next ``W`` it waits for that late reply (and
  drops it) for up to ``late_reply_grace`` seconds.
- The device's own stable flag is the reply's shape: a scale in motion answers
  ``STX ? A CR`` (the motion bit, and bit 6, which is always set) instead of a weight, so
  every weight frame is a still weight and :meth:`Toledo8217Scale.read_now` cannot show a
  moving one (it raises :class:`~device_drivers.scales.errors.ScaleMotionError`).
  ``consecutive`` mode adds the N-readings-within-one-division check for indicators whose
  motion filter is set too eager.
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
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from device_drivers.errors import DeviceConfigError
from device_drivers.options import config_from_options
from device_drivers.scales.base import GRAMS_PER_UNIT, Weight, WeightReading
from device_drivers.scales.config import (
    check_address,
    check_division,
    check_positive,
    check_reconnect,
    check_serial,
    check_stable,
    line_transport,
    tcp_endpoint,
)
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
from device_drivers.scales.line_scale import LineScale
from device_drivers.scales.stable import (
    PollBudget,
    PollCutShortError,
    StableMode,
    StableReader,
    StableRun,
)
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
from device_drivers.transport import ByteTransport, Parity

__all__ = [
    "ScaleGarbledReplyError",
    "Toledo8217Scale",
    "Toledo8217ScaleConfig",
    "create_toledo8217_scale",
]

log = logging.getLogger("device_drivers.scale")


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
        check_address(name, self.address)
        if self.unit not in GRAMS_PER_UNIT:
            raise DeviceConfigError(
                f"{name}: unit must be one of {', '.join(GRAMS_PER_UNIT)}, got {self.unit!r}"
            )
        check_serial(name, self.baudrate, self.bytesize, self.parity, self.stopbits)
        check_stable(name, self.stable_mode, self.stable_readings)
        check_division(name, self.division)
        check_positive(
            name,
            reply_timeout=self.reply_timeout,
            poll_interval=self.poll_interval,
            half_line_timeout=self.half_line_timeout,
        )
        if self.late_reply_grace is not None and self.late_reply_grace < 0:
            raise DeviceConfigError(f"{name}: late_reply_grace must not be negative")
        check_reconnect(name, self.reconnect_min_delay, self.reconnect_max_delay)

    @property
    def grace(self) -> float:
        """How long an owed reply is waited for before the next request."""
        return self.reply_timeout if self.late_reply_grace is None else self.late_reply_grace

    def tcp_endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` when the address is a TCP bridge, ``None`` for a serial port."""
        return tcp_endpoint(self.address)

    def make_transport(self) -> ByteTransport:
        """The transport this address calls for."""
        return line_transport(self)


_STABLE_RETRY = (
    ScaleMotionError,
    ScaleBusyError,
    ScaleGarbledReplyError,
    ScaleUnavailableError,
    ScaleTimeoutError,
)
"""What a stable read polls again after: motion, a scale busy for a moment, a damaged or
missing reply, a lost link. Overload and underload end it at once."""


class Toledo8217Scale(LineScale[Toledo8217ScaleConfig, bytes | DiscardedFrame]):
    """:class:`~device_drivers.scales.base.Scale` for Toledo 8217 devices.

    Call the weighing methods from one thread (the station loop); ``status`` and ``close``
    are safe from any other, so a status page can look and shutdown can interrupt a read.
    """

    _outcome_reasons = frozenset({"overload", "underload", "motion", "busy"})
    # Not only OSError: pyserial lets termios.error through when the port refuses the
    # settings (a pty refuses 7E1), and the caller must never see that as a crash, only as
    # a scale that is not available.
    _open_errors = (Exception,)

    def __init__(
        self, config: Toledo8217ScaleConfig, *, transport: ByteTransport | None = None
    ) -> None:
        super().__init__(config, transport)
        self._replies: deque[tuple[Reply | _Damaged, datetime.datetime]] = deque()
        self._owed_until: float | None = None
        self._stable = StableReader(
            config.device_id,
            poll_interval=config.poll_interval,
            closing=self._closing,
            retry=_STABLE_RETRY,
        )

    # -- the Scale interface -------------------------------------------------------------

    def read_stable(self, timeout: float) -> WeightReading:
        """A weight that holds still, within ``timeout`` seconds.

        Overload and underload end the wait at once: waiting does not cure them. Motion, a
        damaged or missing reply and a lost link are retried until the time is up and then
        raised as what was seen last, so the station can say what to fix.
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

    # -- weighing ----------------------------------------------------------------------------

    def _read_stable(self, timeout: float) -> WeightReading:
        deadline = time.monotonic() + timeout
        budget = PollBudget(deadline, self.config.reply_timeout)
        run: StableRun[WeightReply] = StableRun(
            self.config.stable_mode,
            self.config.stable_readings,
            self.config.division,
            continues=lambda previous, reply: previous.net == reply.net,  # a tare came or went
        )

        def poll() -> tuple[WeightReply, datetime.datetime]:
            # Reconnecting (and waiting out a late reply) first, against the whole deadline,
            # so that time is not taken from the wait for the reply; running out of time
            # there is the driver's caution, not the device's silence.
            try:
                self._prepare(deadline)
            except ScaleTimeoutError as exc:
                raise PollCutShortError(exc) from None
            return budget.poll(lambda wait, counted: self._weigh(wait, count_timeout=counted))

        # Every weight frame is a still weight: motion comes as a status reply instead.
        reply, read_at = self._stable.read(
            poll,
            lambda polled: run.add(polled[0], polled[0].value),
            run=run,
            deadline=deadline,
            motion_detail=f"no stable weight within {timeout:g} s",
        )
        return self._reading(reply, read_at)

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
        """The typed error for a status reply, most serious first.

        Only bits 0–5 are read (the codec drops bit 6, which a scale always sets): a status
        reply is never a refused command, and one with no condition at all is a scale that
        gave no weight this time, asked again by a stable read.
        """
        device_id, status, what = self.config.device_id, reply.status, reply.describe()
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
                raise self._unanswered("W", timeout, counted=count_timeout)
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

    def _next_reply(self, deadline: float) -> tuple[Reply | _Damaged, datetime.datetime] | None:
        """The next frame (or damaged frame), or ``None`` once ``deadline`` passes."""
        return self._await(deadline, lambda: self._replies.popleft() if self._replies else None)

    # -- LineScale hooks -------------------------------------------------------------------

    def _new_framer(self) -> FrameFramer:
        return FrameFramer(half_line_timeout=self.config.half_line_timeout)

    def _take(self, events: Sequence[bytes | DiscardedFrame], read_at: datetime.datetime) -> None:
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

    def _drop_queued(self) -> None:
        while self._replies:
            reply, _ = self._replies.popleft()
            if not isinstance(reply, _Damaged):
                log.info(
                    "scale: dropped an unrequested reply %r",
                    reply.raw,
                    extra={"device": self.config.device_id, "event": "late_reply"},
                )

    def _forget_exchange(self) -> None:
        self._replies.clear()
        self._owed_until = None  # a new link owes nothing


def _exponent(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return exponent if isinstance(exponent, int) else 0


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
