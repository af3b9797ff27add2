"""A Mettler Toledo scale speaking MT-SICS, over a serial port or a TCP bridge.

The driver moves commands and replies and keeps the device's health; what the bytes mean is
:mod:`device_drivers.scales.mtsics`, how they travel is :mod:`device_drivers.transport`.
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
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from device_drivers.errors import DeviceConfigError
from device_drivers.options import config_from_options
from device_drivers.scales.base import Weight, WeightReading, convert_weight
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
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleTransmissionError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.line_scale import LineScale
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
from device_drivers.scales.stable import PollBudget, StableMode, StableReader, StableRun
from device_drivers.transport import ByteTransport, Parity

__all__ = ["MtSicsScale", "MtSicsScaleConfig", "ScaleIdentity", "StableMode"]

log = logging.getLogger("device_drivers.scale")

_STABLE_RETRY = (ScaleTransmissionError, ScaleBusyError, ScaleUnavailableError, ScaleTimeoutError)
"""What a stable read polls again after: a garbled line, a scale busy for a moment, a lost
link or a missing reply. Overload, underload and other general errors end it at once."""


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
        check_address(name, self.address)
        check_serial(name, self.baudrate, self.bytesize, self.parity, self.stopbits)
        check_stable(name, self.stable_mode, self.stable_readings)
        check_division(name, self.division, what="a positive weight")
        check_positive(
            name,
            reply_timeout=self.reply_timeout,
            poll_interval=self.poll_interval,
            half_line_timeout=self.half_line_timeout,
        )
        check_reconnect(name, self.reconnect_min_delay, self.reconnect_max_delay)

    def tcp_endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` when the address is a TCP bridge, ``None`` for a serial port."""
        return tcp_endpoint(self.address)

    def make_transport(self) -> ByteTransport:
        """The transport this address calls for."""
        return line_transport(self, xonxoff=self.xonxoff)


@dataclass(frozen=True, slots=True)
class ScaleIdentity:
    """What the scale says it is: serial number (``I4``) and balance data (``I2``, typically
    model, capacity and unit in one string whose layout varies by model)."""

    serial_number: str
    balance_data: str


class MtSicsScale(LineScale[MtSicsScaleConfig, bytes | DiscardedReply]):
    """:class:`~device_drivers.scales.base.Scale` for MT-SICS devices.

    Call the weighing methods from one thread (the station loop); ``status`` and ``close``
    are safe from any other, so a status page can look and shutdown can interrupt a read.
    """

    _outcome_reasons = frozenset(
        {"overload", "underload", "motion", "busy", "syntax", "transmission", "logical"}
    )

    def __init__(
        self, config: MtSicsScaleConfig, *, transport: ByteTransport | None = None
    ) -> None:
        super().__init__(config, transport)
        self._lines: deque[tuple[bytes, datetime.datetime]] = deque()
        self._reply_owed = False
        self._tare_supported = True
        self._last_read_at = datetime.datetime.now(datetime.UTC)
        self._stable = StableReader(
            config.device_id,
            poll_interval=config.poll_interval,
            closing=self._closing,
            retry=_STABLE_RETRY,
        )

    # -- the Scale interface -------------------------------------------------------------

    def read_stable(self, timeout: float) -> WeightReading:
        """A weight that holds still, with its tare, within ``timeout`` seconds.

        Overload, underload and general errors end the wait at once: waiting does not cure
        them. Motion, a busy device or a missing reply are retried until the time is up and
        then raised as what was seen last, so the station can tell the operator what to fix.
        """
        return self._locked(lambda: self._read_stable(max(timeout, 0.0)), within=timeout)

    def read_now(self) -> WeightReading:
        """What the scale shows right now, stable or not (``stable`` says which).

        For a live display only: a reading with ``stable=False`` must never be recorded.
        """

        def read() -> WeightReading:
            reply, read_at = self._weigh(self.config.reply_timeout)
            return self._reading(reply, read_at, stable=reply.stable)

        return self._locked(read, within=self.config.reply_timeout)

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

        self._locked(zero, within=timeout)

    def tare(self, timeout: float = 5.0, *, immediate: bool = False) -> Weight:
        """Take the present load as tare and return it; the device waits for stability for up
        to ``timeout`` unless ``immediate``."""
        command: CommandName = "TI" if immediate else "T"
        return self._locked(
            lambda: self._weight_result(command, timeout=max(timeout, 0.0)), within=timeout
        )

    def clear_tare(self) -> None:
        """Drop the tare, so net equals gross again."""

        def clear() -> None:
            reply = self._single("TAC", timeout=self.config.reply_timeout)
            if not (isinstance(reply, StatusReply) and reply.status == "A"):
                raise self._refusal(reply, "TAC")

        self._locked(clear)

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
        budget = PollBudget(deadline, self.config.reply_timeout)
        run: StableRun[WeightReply] = StableRun(
            self.config.stable_mode,
            self.config.stable_readings,
            self.config.division,
            continues=lambda previous, reply: previous.unit == reply.unit,
        )
        reply, read_at = self._stable.read(
            lambda: budget.poll(lambda wait, counted: self._weigh(wait, count_timeout=counted)),
            lambda polled: run.add(polled[0], polled[0].value, stable=polled[0].stable),
            run=run,
            deadline=deadline,
            motion_detail=f"no stable weight within {timeout:g} s",
        )
        return self._with_tare(self._reading(reply, read_at, stable=True))

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
            reply = self._await(deadline, lambda: self._pick(reply_id(command)))
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
        if self._await(deadline, lambda: self._pick("I4")) is None:
            # Said as what it is: the engineer sent no I4, the driver did, to fence off a
            # reply still owed (the caller sees the call's outcome in plain words instead).
            request = "I4 (sent to wait out a late reply)"
            raise self._unanswered(request, timeout, counted=count_timeout)
        self._reply_owed = False

    def _pick(self, expected: str) -> Reply | None:
        """The next queued reply with identifier ``expected`` (or a general error), if any;
        replies with other identifiers are late ones and are dropped."""
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
        return None

    # -- LineScale hooks -------------------------------------------------------------------

    def _new_framer(self) -> ReplyFramer:
        return ReplyFramer(half_line_timeout=self.config.half_line_timeout)

    def _take(self, events: Sequence[bytes | DiscardedReply], read_at: datetime.datetime) -> None:
        # Lines are parsed when taken from the queue, so garbage is counted in reply order.
        for event in events:
            if isinstance(event, DiscardedReply):
                self._discarded(event.reason, event.sample)
            else:
                self._lines.append((event, read_at))

    def _drop_queued(self) -> None:
        while self._lines:
            raw, _ = self._lines.popleft()
            if self._parse(raw) is not None:
                log.info(
                    "scale: dropped an unrequested reply %r",
                    raw,
                    extra={"device": self.config.device_id, "event": "late_reply"},
                )

    def _forget_exchange(self) -> None:
        self._lines.clear()
        self._reply_owed = False

    def _parse(self, raw: bytes) -> Reply | None:
        try:
            return parse_reply(raw)
        except MtSicsCodecError as exc:
            self._discarded("garbage", raw, detail=exc.detail)
            return None


def create_mtsics_scale(device_id: str, options: Mapping[str, object]) -> MtSicsScale:
    """The ``mt-sics`` entry point: a site file's scale section to a driver.

    Options are :class:`MtSicsScaleConfig`'s fields (``address`` a serial port or
    ``tcp://host:port``); ``division`` is written as a string.
    """
    config = config_from_options(
        MtSicsScaleConfig, device_id, options, driver="mt-sics", required=("address",)
    )
    return MtSicsScale(config)
