"""A Mettler Toledo scale speaking MT-SICS, over a serial port or a TCP bridge.

The driver moves commands and replies and keeps the device's health; what the bytes mean is
:mod:`device_drivers.scales.mtsics`, how they travel is :mod:`device_drivers.scales.transport`.
It opens the connection lazily and, after the device goes away, reopens it with exponential
backoff from inside the next call, so a scale power-cycled mid-shift comes back on its own.

Stable weights come from polling ``SI`` and never from ``S``. Both answer with the device's
own stable flag (``S S`` stable, ``S D`` dynamic), but ``S`` makes the device hold its answer
until the load settles, for as long as the device likes. When the station's patience runs out
first, the answer is still owed and, since ``S`` and ``SI`` replies look the same, it would be
taken for the reply to the next command; the only level-0 way to cancel it, ``@``, resets the
balance to its power-on state and so drops the tare the operator set. ``SI`` is answered at
once, so every reply belongs to the command just sent.
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
from decimal import Decimal
from typing import Literal, TypeVar, get_args
from urllib.parse import urlsplit

from device_drivers.errors import DeviceConfigError
from device_drivers.link import LinkHealth
from device_drivers.options import config_from_options
from device_drivers.scales.base import ScaleErrorReason, Weight, WeightReading, convert_weight
from device_drivers.scales.errors import (
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleMotionError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleTransmissionError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.mtsics import (
    CommandName,
    DiscardedReply,
    ErrorReply,
    MtSicsCodecError,
    Reply,
    ReplyFramer,
    StatusReply,
    TextReply,
    WeightReply,
    encode_command,
    encode_preset_tare,
    parse_reply,
    reply_id,
)
from device_drivers.scales.transport import ByteTransport, Parity, SerialTransport, TcpTransport
from device_drivers.status import DeviceStatus

__all__ = ["MtSicsScale", "MtSicsScaleConfig", "ScaleIdentity", "StableMode"]

log = logging.getLogger("device_drivers.scale")

StableMode = Literal["device", "consecutive"]
"""How :meth:`MtSicsScale.read_stable` decides a weight holds still.

``device`` takes the first reading the scale itself flags stable. ``consecutive`` also wants
``stable_readings`` flagged readings in a row within one division of each other, for scales
whose motion filter is set too eager (a pallet jack still rolling off reads "stable")."""

_DEGRADED_AFTER_DISCARDS = 3
"""Unreadable lines in a row before a connected scale counts as degraded: one is noise, a
run of them is a wrong baud rate or a bad cable."""

_DEGRADED_AFTER_TIMEOUTS = 2
"""Unanswered commands in a row before an open port counts as degraded: the port (or the
TCP bridge) is there but the scale behind it is off or unplugged."""

_MAX_DRAIN_READS = 64
"""Reads of leftovers before a command; bounds the drain when a device streams on its own."""

_OUTCOME_REASONS = frozenset(
    {"overload", "underload", "motion", "busy", "syntax", "transmission", "logical"}
)
"""Reasons counted when a public method gives up with them. Timeouts, garbage and lost
connections are counted where they happen instead, once per occurrence or outage."""

_TCP_SCHEME = "tcp://"

_R = TypeVar("_R")


def _last_digit(value: Decimal) -> Decimal:
    """One unit in the last printed place: what the scale displays is its division."""
    exponent = value.as_tuple().exponent
    return Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)


@dataclass(frozen=True, slots=True)
class MtSicsScaleConfig:
    """How one MT-SICS scale is reached and how patient to be with it.

    ``address`` is a serial port (use a stable ``/dev/serial/by-id/...`` name, not
    ``/dev/ttyUSB0``, which renumbers after a reboot) or ``tcp://host:port`` for a bridge.
    ``reply_timeout`` bounds every command except the ones given their own timeout; it may
    well be below one second, since an MT-SICS device answers ``SI`` within milliseconds.
    ``division`` is the scale's readability (``d``); left out, it is taken from the number of
    decimals in each reading, which is what the scale displays.
    """

    device_id: str
    address: str | os.PathLike[str]
    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = "N"
    stopbits: int = 1
    xonxoff: bool = False
    reply_timeout: float = 1.0
    stable_mode: StableMode = "device"
    stable_readings: int = 3
    division: Decimal | None = None
    poll_interval: float = 0.05
    query_tare: bool = True
    half_line_timeout: float = 0.2
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
        if self.division is not None and not (self.division.is_finite() and self.division > 0):
            raise DeviceConfigError(f"{name}: division must be a positive weight")
        if min(self.reply_timeout, self.poll_interval, self.half_line_timeout) <= 0:
            raise DeviceConfigError(
                f"{name}: reply_timeout, poll_interval and half_line_timeout must be positive"
            )
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise DeviceConfigError(f"{name}: need 0 < reconnect_min_delay <= reconnect_max_delay")

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
            xonxoff=self.xonxoff,
            write_timeout=self.reply_timeout,
        )


@dataclass(frozen=True, slots=True)
class ScaleIdentity:
    """What the scale says it is: serial number (``I4``) and balance data (``I2``, typically
    model, capacity and unit in one string whose layout varies by model)."""

    serial_number: str
    balance_data: str


class MtSicsScale:
    """:class:`~device_drivers.scales.base.Scale` for MT-SICS devices.

    Call the weighing methods from one thread (the station loop); ``status`` and ``close``
    are safe from any other, so a status page can look and shutdown can interrupt a read.
    """

    def __init__(
        self, config: MtSicsScaleConfig, *, transport: ByteTransport | None = None
    ) -> None:
        self.config = config
        self._transport = transport if transport is not None else config.make_transport()
        self._framer = self._new_framer()
        self._lines: deque[tuple[bytes, datetime.datetime]] = deque()
        self._io_lock = threading.Lock()
        self._closing = threading.Event()
        self._is_open = False
        self._reply_owed = False
        self._tare_supported = True
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
        self._last_read_at = datetime.datetime.now(datetime.UTC)

    def __enter__(self) -> MtSicsScale:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the Scale interface -------------------------------------------------------------

    def read_stable(self, timeout: float) -> WeightReading:
        """A weight that holds still, with its tare, within ``timeout`` seconds.

        Overload, underload and general errors end the wait at once: waiting does not cure
        them. Motion, a busy device or a missing reply are retried until the time is up and
        then raised as what was seen last, so the station can tell the operator what to fix.
        """
        return self._locked(lambda: self._read_stable(max(timeout, 0.0)))

    def read_now(self) -> WeightReading:
        """What the scale shows right now, stable or not (``stable`` says which).

        For a live display only: a reading with ``stable=False`` must never be recorded.
        """

        def read() -> WeightReading:
            reply, read_at = self._weigh(self.config.reply_timeout)
            return self._reading(reply, read_at, stable=reply.stable)

        return self._locked(read)

    def zero(self, timeout: float = 5.0, *, immediate: bool = False) -> None:
        """Set zero; the device waits for stability for up to ``timeout`` unless ``immediate``.

        Zeroing also drops any tare, as on the scale's keypad. A zero that timed out may still
        happen on the device later; read the scale before relying on it.
        """
        command: CommandName = "ZI" if immediate else "Z"

        def zero() -> None:
            reply = self._single(command, timeout=max(timeout, 0.0))
            if isinstance(reply, StatusReply) and reply.status in ("A", "S", "D"):
                return
            raise self._refusal(reply, command)

        self._locked(zero)

    def tare(self, timeout: float = 5.0, *, immediate: bool = False) -> Weight:
        """Take the present load as tare and return it; the device waits for stability for up
        to ``timeout`` unless ``immediate``."""
        command: CommandName = "TI" if immediate else "T"
        return self._locked(lambda: self._weight_result(command, timeout=max(timeout, 0.0)))

    def clear_tare(self) -> None:
        """Drop the tare, so net equals gross again."""

        def clear() -> None:
            reply = self._single("TAC", timeout=self.config.reply_timeout)
            if not (isinstance(reply, StatusReply) and reply.status == "A"):
                raise self._refusal(reply, "TAC")

        self._locked(clear)

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

    # -- MT-SICS extras --------------------------------------------------------------------

    def tare_value(self) -> Weight:
        """The tare in force (``TA``), wherever it was set: here, a preset or the keypad."""
        return self._locked(lambda: self._weight_result("TA", timeout=self.config.reply_timeout))

    def preset_tare(self, tare: Weight) -> Weight:
        """Set a known tare (``TA <value> <unit>``) and return it as the device confirms it."""
        try:
            command = encode_preset_tare(tare.value, tare.unit)
        except ValueError as exc:
            raise DeviceConfigError(f"{self.config.device_id}: {exc}") from None
        return self._locked(
            lambda: self._weight_result("TA", timeout=self.config.reply_timeout, line=command)
        )

    def identify(self) -> ScaleIdentity:
        """Serial number and balance data, for the asset register and the status page."""

        def ask() -> ScaleIdentity:
            serial_number = self._text("I4")
            return ScaleIdentity(serial_number=serial_number, balance_data=self._text("I2"))

        return self._locked(ask)

    def supported_commands(self) -> tuple[tuple[int, str], ...]:
        """``(level, command)`` for every command the device lists in reply to ``I0``."""

        def ask() -> tuple[tuple[int, str], ...]:
            replies = self._exchange("I0", timeout=self.config.reply_timeout)
            last = replies[-1]
            if isinstance(last, StatusReply) and last.status != "A":
                raise self._refusal(last, "I0")
            listed = [r for r in replies if isinstance(r, TextReply)]
            return tuple((int(r.fields[0]), r.fields[1]) for r in listed)

        return self._locked(ask)

    # -- weighing ----------------------------------------------------------------------------

    def _read_stable(self, timeout: float) -> WeightReading:
        deadline = time.monotonic() + timeout
        run: list[WeightReply] = []
        last_problem: ScaleError | None = None
        first = True
        while True:
            # A poll cut short by the caller's deadline is not evidence of a silent device,
            # unless it is the only poll there is.
            wait = min(self.config.reply_timeout, max(deadline - time.monotonic(), 0.0))
            count_timeout, first = first or wait >= self.config.reply_timeout, False
            try:
                reply, read_at = self._weigh(wait, count_timeout=count_timeout)
            except (ScaleTransmissionError, ScaleBusyError) as exc:
                # Worth another poll: a garbled line, or a scale that is busy for a moment.
                last_problem, run = exc, []
            except (ScaleOverloadError, ScaleUnderloadError, ScaleCommandError):
                raise
            except ScaleUnavailableError as exc:
                if self._closing.is_set():
                    raise
                last_problem, run = exc, []
            except ScaleTimeoutError as exc:
                if not count_timeout:
                    break  # the deadline cut this poll short; what was seen before stands
                last_problem, run = exc, []
            else:
                last_problem = None
                if self._settled(run, reply):
                    return self._with_tare(self._reading(reply, read_at, stable=True))
            pause = min(self.config.poll_interval, deadline - time.monotonic())
            if pause <= 0 or self._closing.wait(pause):
                break
        if self._closing.is_set():
            last_problem = ScaleUnavailableError(self.config.device_id, "closed")
        if last_problem is None:
            last_problem = ScaleMotionError(
                self.config.device_id, f"no stable weight within {timeout:g} s"
            )
        raise last_problem

    def _settled(self, run: list[WeightReply], reply: WeightReply) -> bool:
        if not reply.stable:
            run.clear()
            return False
        if self.config.stable_mode == "device":
            return True
        if run and run[-1].unit != reply.unit:
            run.clear()
        run.append(reply)
        division = self.config.division or _last_digit(reply.value)
        while max(r.value for r in run) - min(r.value for r in run) > division:
            run.pop(0)
        if len(run) > self.config.stable_readings:
            run.pop(0)
        return len(run) >= self.config.stable_readings

    def _weigh(
        self, timeout: float, *, count_timeout: bool = True
    ) -> tuple[WeightReply, datetime.datetime]:
        replies = self._exchange("SI", timeout=timeout, count_timeout=count_timeout)
        reply = replies[-1]
        if isinstance(reply, WeightReply):
            return reply, self._last_read_at
        raise self._refusal(reply, "SI")

    def _reading(
        self, reply: WeightReply, read_at: datetime.datetime, *, stable: bool
    ) -> WeightReading:
        return WeightReading(
            device_id=self.config.device_id,
            net=reply.value,
            gross=None,
            tare=None,
            unit=reply.unit,
            stable=stable,
            raw=reply.raw,
            read_at=read_at,
        )

    def _with_tare(self, reading: WeightReading) -> WeightReading:
        # The tare is asked for, not remembered: it may have been set on the keypad, and a
        # remembered tare that is wrong would make a gross weight that is wrong.
        if not (self.config.query_tare and self._tare_supported):
            return reading
        try:
            tare = self._weight_result("TA", timeout=self.config.reply_timeout)
        except ScaleCommandError as exc:
            if exc.code == "ES":
                self._tare_supported = False  # this model has no TA; stop asking
            return reading
        except ScaleError:
            return reading  # already counted; the net weight is still good
        try:
            tare_value = convert_weight(tare.value, tare.unit, reading.unit)
        except ValueError:
            return reading
        return WeightReading(
            device_id=reading.device_id,
            net=reading.net,
            gross=reading.net + tare_value,
            tare=tare_value,
            unit=reading.unit,
            stable=reading.stable,
            raw=reading.raw,
            read_at=reading.read_at,
        )

    def _weight_result(
        self, command: CommandName, *, timeout: float, line: bytes | None = None
    ) -> Weight:
        reply = self._single(command, timeout=timeout, line=line)
        if isinstance(reply, WeightReply):
            return Weight(reply.value, reply.unit)
        raise self._refusal(reply, command)

    def _text(self, command: CommandName) -> str:
        reply = self._single(command, timeout=self.config.reply_timeout)
        if isinstance(reply, TextReply):
            return reply.fields[0]
        raise self._refusal(reply, command)

    def _refusal(self, reply: Reply, command: CommandName) -> ScaleError:
        """The typed error for a reply that is a well-formed "no"."""
        device_id = self.config.device_id
        status = reply.status if isinstance(reply, StatusReply) else ""
        what = {"S": "weight", "SI": "weight", "Z": "zero", "ZI": "zero"}.get(command, command)
        if status == "+":
            return ScaleOverloadError(device_id, f"{what}: above the permitted range")
        if status == "-":
            return ScaleUnderloadError(device_id, f"{what}: below the permitted range")
        if status == "I":
            return ScaleBusyError(device_id, f"{command} not executable now")
        if status == "L":
            return ScaleCommandError(device_id, "EL", command)
        return ScaleCommandError(device_id, "EL", f"{command} (unexpected reply {reply.raw!r})")

    # -- one exchange ------------------------------------------------------------------------

    def _single(self, command: CommandName, *, timeout: float, line: bytes | None = None) -> Reply:
        return self._exchange(command, timeout=timeout, line=line)[-1]

    def _exchange(
        self,
        command: CommandName,
        *,
        timeout: float,
        line: bytes | None = None,
        count_timeout: bool = True,
    ) -> list[Reply]:
        """Send one command and collect its reply lines (several for ``I0``).

        Lines with another command's identifier are late replies to something that timed
        out earlier and are dropped; ``ES``/``ET``/``EL`` carry no identifier and are taken
        as the answer to this command.
        """
        deadline = time.monotonic() + timeout
        self._connect(deadline)
        self._discard_leftovers()
        if self._reply_owed:
            self._fence(deadline, timeout, count_timeout=count_timeout)
        self._send(line if line is not None else encode_command(command))
        replies: list[Reply] = []
        while True:
            reply = self._next_reply(reply_id(command), deadline)
            if reply is None:
                self._reply_owed = True
                raise self._unanswered(command, timeout, counted=count_timeout)
            if isinstance(reply, ErrorReply):
                cls = ScaleTransmissionError if reply.code == "ET" else ScaleCommandError
                raise cls(self.config.device_id, reply.code, command)
            replies.append(reply)
            if not (isinstance(reply, TextReply) and reply.status == "B"):
                return replies

    def _fence(self, deadline: float, timeout: float, *, count_timeout: bool) -> None:
        """Wait out a reply still owed by a command that timed out, before sending another.

        An MT-SICS device answers strictly in order, so once the answer to a harmless ``I4``
        is in, every earlier answer is in too (and was dropped). Without this, a late
        ``S D`` would be read as the answer to the next ``SI``: a weight from the past.
        """
        self._send(encode_command("I4"))
        if self._next_reply("I4", deadline) is None:
            raise self._unanswered("I4", timeout, counted=count_timeout)
        self._reply_owed = False

    def _send(self, line: bytes) -> None:
        try:
            self._transport.write(line)
        except OSError as exc:
            raise self._lost(exc) from None

    def _next_reply(self, expected: str, deadline: float) -> Reply | None:
        """The next reply with identifier ``expected`` (or a general error), or ``None`` once
        ``deadline`` passes; replies with other identifiers are late ones and are dropped."""
        while True:
            while self._lines:
                raw, read_at = self._lines.popleft()
                reply = self._parse(raw)
                if reply is None:
                    continue
                if not isinstance(reply, ErrorReply) and reply.id != expected:
                    log.info(
                        "scale: dropped a late reply %r",
                        raw,
                        extra={"device": self.config.device_id, "event": "late_reply"},
                    )
                    continue
                self._answered()
                self._last_read_at = read_at
                return reply
            now = time.monotonic()
            if self._closing.is_set():
                raise ScaleUnavailableError(self.config.device_id, "closed")
            if now >= deadline:
                return None
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
            self._link.data_arrived()
        events = self._framer.feed(chunk, now) if chunk else self._framer.expire(now)
        for event in events:
            if isinstance(event, DiscardedReply):
                self._discarded(event.reason, event.sample)
            else:
                self._lines.append((event, read_at))
        return bool(chunk)

    def _discard_leftovers(self) -> None:
        """Throw away whatever is left from earlier exchanges before a new command."""
        for _ in range(_MAX_DRAIN_READS):
            if not self._receive(0.0):
                break
        for event in self._framer.flush():
            self._discarded(event.reason, event.sample)
        while self._lines:
            raw, _ = self._lines.popleft()
            if self._parse(raw) is not None:
                log.info(
                    "scale: dropped an unrequested reply %r",
                    raw,
                    extra={"device": self.config.device_id, "event": "late_reply"},
                )

    def _parse(self, raw: bytes) -> Reply | None:
        try:
            return parse_reply(raw)
        except MtSicsCodecError as exc:
            self._discarded("garbage", raw, detail=exc.detail)
            return None

    # -- connection ----------------------------------------------------------------------------

    def _connect(self, deadline: float) -> None:
        while not self._is_open:
            if self._closing.is_set():
                raise ScaleUnavailableError(self.config.device_id, "closed")
            now = time.monotonic()
            if self._link.may_attempt(now):
                try:
                    self._transport.open()
                except OSError as exc:
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
        self._lines.clear()
        self._reply_owed = False
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

    def _new_framer(self) -> ReplyFramer:
        return ReplyFramer(half_line_timeout=self.config.half_line_timeout)

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

    def _unanswered(
        self, command: CommandName, timeout: float, *, counted: bool
    ) -> ScaleTimeoutError:
        detail = f"no reply to {command} within {timeout:g} s"
        if counted:
            self._timeouts_in_a_row += 1
            self._count("timeout", detail)
            if self._timeouts_in_a_row >= _DEGRADED_AFTER_TIMEOUTS:
                self._link.degrade()
        return ScaleTimeoutError(self.config.device_id, detail)

    def _discarded(self, reason: str, sample: bytes, *, detail: str = "line discarded") -> None:
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


def create_mtsics_scale(device_id: str, options: Mapping[str, object]) -> MtSicsScale:
    """The ``mt-sics`` entry point: a site file's scale section to a driver.

    Options are :class:`MtSicsScaleConfig`'s fields (``address`` a serial port or
    ``tcp://host:port``); ``division`` is written as a string.
    """
    config = config_from_options(
        MtSicsScaleConfig, device_id, options, driver="mt-sics", required=("address",)
    )
    return MtSicsScale(config)
