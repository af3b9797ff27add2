"""The Toledo 8217 weight protocol (as Odoo's IoT box speaks it) as a pure codec.

Bytes in, typed values out, with no port and no real clock, so every rule about what a reply
means is tested from bytes alone, on any transport that carries the frames.

What this follows, from ``PROTOCOLS.md`` (Toledo 8217, as in Odoo's IoT box):

- 9600 baud, 7 data bits, even parity, 1 stop bit (the transport's business, not this one's).
- The host sends ``W`` alone, no terminator; the protocol has no other command we rely on.
- A good reply is ``STX <weight> [N] CR``: the weight in the display unit with its decimal
  point, optionally padded with spaces or leading zeros, then ``N`` when it is a net weight
  (a tare is in force). ``N`` is information, not an error. The frame carries no unit: the
  unit is how the indicator is set up, so the driver is told it.
- A problem reply is ``STX ? <status> CR``. The status byte is a printable character: bit 6
  is always 1 (no condition is ``@``, in motion ``A``) and bit 7 is the 7E1 line's parity
  bit, which the port strips. Only bits 0–5 mean something: in motion, over capacity, under
  zero, outside zero capture range, centre of zero, net weight. Bit 6 is read as nothing at
  all (reading it as "bad command", as an earlier version of the notes had it, turned every
  status reply into an error, motion included); Odoo's 8217 parser reads bits 0–5 only too.
  A byte with bit 7 set means the port is not set to 7 data bits, and is refused.

Two consequences of the framing shape the framer and the parser:

- A real scale's status byte is printable, but the framer does not rely on it: after
  ``STX ?`` the next byte is taken as the status whatever it is, CR and STX included, and
  only the byte after it must be the CR, so a damaged status byte costs one frame only.
- Nothing identifies which request a reply answers; matching replies to requests is the
  driver's job (it never has two requests out at once).

A frame that does not fit this grammar exactly raises :class:`Toledo8217CodecError`; it is
never read leniently, because a leniently read weight is a wrong weight nobody notices. In
particular a status with over capacity and under zero both set is refused: a scale cannot be
both, so the byte was damaged on the way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from device_drivers.errors import RejectedInputError

__all__ = [
    "CR",
    "STX",
    "WEIGHT_REQUEST",
    "DiscardedFrame",
    "FrameFramer",
    "Reply",
    "StatusReply",
    "Toledo8217CodecError",
    "Toledo8217Status",
    "WeightReply",
    "format_status_reply",
    "format_weight_reply",
    "parse_frame",
]

STX: Final = 0x02
CR: Final = 0x0D
_QUESTION: Final = ord("?")

WEIGHT_REQUEST: Final = b"W"
"""The only request: ``W``, without a terminator."""

MAX_FRAME: Final = 24
"""Longest frame accepted, STX and CR included. A weight is a handful of characters; a
longer run between STX and CR is noise, however digit-like."""

_WEIGHT_BODY = re.compile(rb" *(?P<value>[0-9]+(?:\.[0-9]+)?) *(?P<net>N?)")
"""Spaces, digits with at most one decimal point inside, optional ``N``. No sign: a weight
below zero is a status reply (under zero), never a negative number."""

_SAMPLE_BYTES = 32


class Toledo8217Status(enum.IntFlag):
    """The meaningful bits (0–5) of a ``STX ? <status> CR`` reply's status byte."""

    MOTION = 0x01
    OVER_CAPACITY = 0x02
    UNDER_ZERO = 0x04
    OUTSIDE_ZERO_CAPTURE = 0x08
    CENTRE_OF_ZERO = 0x10
    NET = 0x20


_STATUS_BITS: Final = 0x3F
_ALWAYS_SET: Final = 0x40
"""Bit 6, set in every status byte a scale sends, so the byte is a printable character."""
_PARITY_BIT: Final = 0x80


class Toledo8217CodecError(RejectedInputError):
    """A frame that is not a valid 8217 reply; counted by the driver, never a reading."""

    def __init__(self, detail: str, raw: bytes = b"") -> None:
        super().__init__("garbage", detail)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class WeightReply:
    """``STX <weight> [N] CR``: the scale is still and gives its weight.

    ``value`` keeps the decimals the scale printed (``01.250`` is ``Decimal("1.250")``): how
    many there are is the scale's division, which a stable reader needs.
    """

    value: Decimal
    net: bool
    raw: bytes


@dataclass(frozen=True, slots=True)
class StatusReply:
    """``STX ? <status> CR``: no weight now, and the status byte says why."""

    status: Toledo8217Status
    raw: bytes

    def describe(self) -> str:
        """The bits that are set, in words, for an error message."""
        names = [
            flag.name.lower().replace("_", " ")
            for flag in Toledo8217Status
            if flag in self.status and flag.name
        ]
        return ", ".join(names) or "no condition"


Reply = WeightReply | StatusReply


def parse_frame(raw: bytes) -> Reply:
    """Read one whole frame (``STX`` … ``CR``, both included) or raise the codec error."""
    if len(raw) < 3 or raw[0] != STX or raw[-1] != CR:
        raise Toledo8217CodecError(f"not an STX ... CR frame: {_sample(raw)!r}", raw)
    if len(raw) > MAX_FRAME:
        raise Toledo8217CodecError(f"frame of {len(raw)} bytes is too long", raw)
    body = raw[1:-1]
    if body[0] == _QUESTION:
        return _status_reply(body, raw)
    match = _WEIGHT_BODY.fullmatch(body)
    if match is None:
        raise Toledo8217CodecError(f"not a weight: {_sample(raw)!r}", raw)
    return WeightReply(Decimal(match["value"].decode("ascii")), bool(match["net"]), raw)


def _status_reply(body: bytes, raw: bytes) -> StatusReply:
    if len(body) != 2:
        raise Toledo8217CodecError(f"a status reply has one status byte: {_sample(raw)!r}", raw)
    byte = body[1]
    if byte & _PARITY_BIT:
        raise Toledo8217CodecError(
            f"status byte {byte:#04x} has bit 7 (the parity bit) set: "
            "is the port set to 7 data bits, even parity?",
            raw,
        )
    status = Toledo8217Status(byte & _STATUS_BITS)
    both = Toledo8217Status.OVER_CAPACITY | Toledo8217Status.UNDER_ZERO
    if status & both == both:
        raise Toledo8217CodecError(f"status {byte:#04x} is over capacity and under zero", raw)
    return StatusReply(status, raw)


def format_weight_reply(value: Decimal, *, net: bool = False, width: int = 0) -> bytes:
    """The frame a scale sends for ``value``, zero-padded to ``width`` characters.

    For tests and fakes; the twin has its own, written from the protocol notes.
    """
    if not value.is_finite() or value < 0:
        raise ValueError(f"an 8217 weight is a non-negative number, got {value}")
    text = format(value, "f").rjust(width, "0")
    return bytes([STX]) + text.encode("ascii") + (b"N" if net else b"") + bytes([CR])


def format_status_reply(status: Toledo8217Status | int) -> bytes:
    """The frame a scale sends instead of a weight (bit 6 set, as always), for tests and
    fakes."""
    bits = int(status)
    if not 0 <= bits <= _STATUS_BITS:
        raise ValueError(f"status must be bits 0-5, got {bits:#04x}")
    return bytes([STX, _QUESTION, _ALWAYS_SET | bits, CR])


def _sample(raw: bytes) -> bytes:
    return raw[:_SAMPLE_BYTES]


# -- framing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscardedFrame:
    """Bytes thrown away before they became a frame; ``sample`` is kept only for the log.

    ``half_line`` is a frame that started (STX) and never ended; ``garbage`` is anything
    outside a frame, or a frame too long to be one.
    """

    reason: Literal["half_line", "garbage"]
    sample: bytes


class FrameFramer:
    """Cuts the byte stream from a scale into ``STX … CR`` frames.

    Bytes outside a frame are collected into one ``garbage`` event per run, reported when the
    next frame starts, on :meth:`flush`, or once the line has been silent for
    ``half_line_timeout``. A frame interrupted by a new STX, or silent for that long, is a
    ``half_line``: a scale never pauses inside a frame, and a partial frame glued to the next
    reply would corrupt that one too. The byte after ``STX ?`` is taken as the status whatever
    its value, since the status may be CR or STX.
    """

    def __init__(self, *, max_length: int = MAX_FRAME, half_line_timeout: float = 0.2) -> None:
        if max_length < 4 or half_line_timeout <= 0:
            raise ValueError("max_length must be at least 4 and half_line_timeout positive")
        self._max_length = max_length
        self._half_line_timeout = half_line_timeout
        self._frame = bytearray()
        self._in_frame = False
        self._noise = bytearray()
        self._noise_seen = False
        self._last_byte_at: float | None = None

    def feed(self, data: bytes, now: float) -> list[bytes | DiscardedFrame]:
        """Take bytes that arrived at ``now`` (any monotonic clock, in seconds)."""
        events = self.expire(now)
        for byte in data:
            self._last_byte_at = now
            if not self._in_frame:
                if byte == STX:
                    events.extend(self._noise_event())
                    self._start_frame()
                else:
                    self._noise_seen = True
                    if len(self._noise) < _SAMPLE_BYTES:
                        self._noise.append(byte)
                continue
            status_byte = len(self._frame) == 2 and self._frame[1] == _QUESTION
            if byte == STX and not status_byte:
                events.append(DiscardedFrame("half_line", bytes(self._frame[:_SAMPLE_BYTES])))
                self._start_frame()
                continue
            self._frame.append(byte)
            if byte == CR and not status_byte:
                events.append(bytes(self._frame))
                self._end_frame()
            elif len(self._frame) >= self._max_length:
                # Too long to be a frame: the rest of it, up to the next STX, is noise.
                self._noise[:] = self._frame[:_SAMPLE_BYTES]
                self._noise_seen = True
                self._end_frame()
        if not self._in_frame and not self._noise_seen:
            self._last_byte_at = None
        return events

    def expire(self, now: float) -> list[bytes | DiscardedFrame]:
        """Give up on a partial frame or a run of noise that has been silent too long."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        return self.flush()

    def flush(self) -> list[bytes | DiscardedFrame]:
        """Give up on whatever is pending, now (before a new request)."""
        events: list[bytes | DiscardedFrame] = list(self._noise_event())
        if self._in_frame:
            events.append(DiscardedFrame("half_line", bytes(self._frame[:_SAMPLE_BYTES])))
            self._end_frame()
        self._last_byte_at = None
        return events

    def deadline(self) -> float | None:
        """When pending bytes are given up; ``None`` when nothing is pending."""
        if self._last_byte_at is None:
            return None
        return self._last_byte_at + self._half_line_timeout

    def _noise_event(self) -> list[DiscardedFrame]:
        if not self._noise_seen:
            return []
        event = DiscardedFrame("garbage", bytes(self._noise))
        self._noise.clear()
        self._noise_seen = False
        return [event]

    def _start_frame(self) -> None:
        self._frame[:] = bytes([STX])
        self._in_frame = True

    def _end_frame(self) -> None:
        self._frame.clear()
        self._in_frame = False
