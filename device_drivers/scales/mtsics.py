"""MT-SICS (Mettler Toledo Standard Interface Command Set) as a pure codec.

Bytes in, typed values out, with no port and no real clock, so every rule about what a reply
means is tested from bytes alone and works on any transport that carries MT-SICS lines (a
serial port, a TCP bridge).

What this follows, from the MT-SICS reference manuals (level 0/1 commands) and checked
against the notes in ``PROTOCOLS.md``:

- Commands and replies are ASCII lines ended by CR LF. Commands are upper case; parameters
  are separated by one space.
- A reply starts with the command's identifier and a one-letter status. Replies to ``S`` and
  ``SI`` both carry the identifier ``S``; ``SIR`` repeats ``SI`` replies. ``@`` is answered
  like ``I4`` (``I4 A "<serial number>"``).
- Status ``S`` stable, ``D`` dynamic, ``A`` done / last line, ``B`` more lines follow, ``I``
  not executable now (busy, or the device's own stability wait ran out), ``L`` logical
  problem with a parameter, ``+`` / ``-`` above / below the permitted range.
- A weight is a right-aligned field (ten characters by default, wider for big values) with
  the sign directly in front of the digits, then the unit. How many decimals it has is the
  scale's readability, so the codec keeps trailing zeros: ``100.00 g`` stays
  ``Decimal("100.00")``.
- ``ES`` syntax error (command not known), ``ET`` transmission error (the command arrived
  damaged), ``EL`` logical error (understood, not executable), without an identifier.

A reply that does not fit this grammar exactly raises :class:`MtSicsCodecError`; it is never
read leniently, because a leniently read weight is a wrong weight nobody notices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal, get_args

from device_drivers.errors import RejectedInputError
from device_drivers.scales.base import GRAMS_PER_UNIT
from device_drivers.scales.errors import ScaleErrorCode

__all__ = [
    "COMMANDS",
    "CommandName",
    "DiscardedReply",
    "ErrorReply",
    "MtSicsCodecError",
    "Reply",
    "ReplyFramer",
    "StatusReply",
    "TextReply",
    "WeightReply",
    "encode_command",
    "encode_preset_tare",
    "format_weight",
    "format_weight_reply",
    "parse_reply",
    "reply_id",
]

CommandName = Literal["S", "SI", "SIR", "Z", "ZI", "T", "TI", "TA", "TAC", "@", "I0", "I2", "I4"]
COMMANDS: Final = frozenset(get_args(CommandName))

CRLF: Final = b"\r\n"

_REPLY_ID: Final[dict[str, str]] = {"SI": "S", "SIR": "S", "@": "I4"}

# Which statuses each identifier may carry with a weight, with nothing, or with text. A
# status outside these tables is a codec error, not an unknown-but-harmless reply.
_WEIGHT_STATUSES: Final[dict[str, frozenset[str]]] = {
    "S": frozenset("SD"),
    "T": frozenset("S"),
    "TI": frozenset("SD"),
    "TA": frozenset("A"),
}
_BARE_STATUSES: Final[dict[str, frozenset[str]]] = {
    "S": frozenset("I+-"),
    "Z": frozenset("AI+-"),
    "ZI": frozenset("SDI+-"),
    "T": frozenset("I+-"),
    "TI": frozenset("I+-"),
    "TA": frozenset("IL"),
    "TAC": frozenset("AIL"),
    "I0": frozenset("AI"),
    "I2": frozenset("I"),
    "I4": frozenset("I"),
}
_TEXT_STATUSES: Final[dict[str, frozenset[str]]] = {
    "I0": frozenset("AB"),
    "I2": frozenset("A"),
    "I4": frozenset("A"),
}

_ERROR_CODES: Final[dict[str, ScaleErrorCode]] = {"ES": "ES", "ET": "ET", "EL": "EL"}

_WEIGHT_REPLY = re.compile(
    r"(?P<id>[A-Z][A-Z0-9]*) (?P<status>\S) +(?P<value>-?[0-9]+(?:\.[0-9]+)?) (?P<unit>[A-Za-z]+) *"
)
_BARE_REPLY = re.compile(r"(?P<id>[A-Z][A-Z0-9]*) (?P<status>\S) *")
_TEXT_REPLY = re.compile(r'(?P<id>I[024]) (?P<status>[AB])(?P<fields>(?: +(?:"[^"]*"|[0-9]+))+) *')
_TEXT_FIELD = re.compile(r'"([^"]*)"|([0-9]+)')
_PARAMETER = re.compile(r"[!-~]+")  # printable ASCII without space: one parameter

_SAMPLE_BYTES = 32


class MtSicsCodecError(RejectedInputError):
    """A line that is not a valid MT-SICS reply; counted by the driver, never a reading."""

    def __init__(self, detail: str, raw: bytes = b"") -> None:
        super().__init__("garbage", detail)
        self.raw = raw


@dataclass(frozen=True, slots=True)
class WeightReply:
    """A reply carrying a weight: ``S S``/``S D`` (S, SI, SIR), ``T S``, ``TI S|D``, ``TA A``."""

    id: str
    status: str
    value: Decimal
    unit: str
    raw: bytes

    @property
    def stable(self) -> bool:
        return self.status != "D"


@dataclass(frozen=True, slots=True)
class StatusReply:
    """A reply with a status and nothing else, such as ``Z A``, ``S +`` or ``TAC I``."""

    id: str
    status: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class TextReply:
    """An identification reply: ``I4 A "<serial>"``, ``I2 A "<data>"``, ``I0 B 0 "S"``.

    ``fields`` holds the quoted strings unquoted and the bare numbers as text, in order.
    """

    id: str
    status: str
    fields: tuple[str, ...]
    raw: bytes


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """``ES``, ``ET`` or ``EL``: the device could not act on the last command."""

    code: ScaleErrorCode
    raw: bytes


Reply = WeightReply | StatusReply | TextReply | ErrorReply


def reply_id(command: CommandName) -> str:
    """The identifier the replies to ``command`` start with."""
    return _REPLY_ID.get(command, command)


def encode_command(command: CommandName, *parameters: str) -> bytes:
    """One command line, CR LF included.

    Parameters are refused when they hold a space, a control character or non-ASCII: any
    of those would change how the device splits the line, and it would act on a different
    command than the one the caller meant.
    """
    if command not in COMMANDS:
        raise ValueError(f"not an MT-SICS command this codec speaks: {command!r}")
    for parameter in parameters:
        if not _PARAMETER.fullmatch(parameter):
            raise ValueError(f"MT-SICS parameter must be printable ASCII, got {parameter!r}")
    return " ".join((command, *parameters)).encode("ascii") + CRLF


def encode_preset_tare(value: Decimal, unit: str) -> bytes:
    """``TA <value> <unit>``: set a known tare (an empty crate's weight) without weighing it."""
    if unit not in GRAMS_PER_UNIT:
        raise ValueError(f"unknown weight unit {unit!r}")
    if not value.is_finite() or value < 0:
        raise ValueError(f"a preset tare must be a non-negative weight, got {value}")
    return encode_command("TA", format(value, "f"), unit)


def format_weight(value: Decimal, width: int = 10) -> str:
    """A weight field as MT-SICS devices print it: right-aligned, sign against the digits."""
    return format(value, "f").rjust(width)


def format_weight_reply(id_: str, status: str, value: Decimal, unit: str) -> bytes:
    """The reply line a device sends for a weight, CR LF included (used by tests and fakes)."""
    return f"{id_} {status} {format_weight(value)} {unit}".encode("ascii") + CRLF


def parse_reply(raw: bytes) -> Reply:
    """Read one reply line (terminator already removed) or raise :class:`MtSicsCodecError`."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise MtSicsCodecError(f"not ASCII: {_sample(raw)!r}", raw) from None
    if not text.isprintable():
        raise MtSicsCodecError(f"control characters in {_sample(raw)!r}", raw)
    if (code := _ERROR_CODES.get(text)) is not None:
        return ErrorReply(code, raw)
    if match := _WEIGHT_REPLY.fullmatch(text):
        return _weight_reply(match, raw)
    if match := _BARE_REPLY.fullmatch(text):
        id_, status = match["id"], match["status"]
        if status not in _BARE_STATUSES.get(id_, frozenset()):
            raise MtSicsCodecError(f"no reply {id_} {status} without data: {text!r}", raw)
        return StatusReply(id_, status, raw)
    if match := _TEXT_REPLY.fullmatch(text):
        return _text_reply(match, raw)
    raise MtSicsCodecError(f"not an MT-SICS reply: {_sample(raw)!r}", raw)


def _weight_reply(match: re.Match[str], raw: bytes) -> WeightReply:
    id_, status, unit = match["id"], match["status"], match["unit"]
    if status not in _WEIGHT_STATUSES.get(id_, frozenset()):
        raise MtSicsCodecError(f"no weight reply {id_} {status}: {_sample(raw)!r}", raw)
    if unit not in GRAMS_PER_UNIT:
        raise MtSicsCodecError(f"unknown unit {unit!r} in {_sample(raw)!r}", raw)
    return WeightReply(id_, status, Decimal(match["value"]), unit, raw)


def _text_reply(match: re.Match[str], raw: bytes) -> TextReply:
    id_, status = match["id"], match["status"]
    if status not in _TEXT_STATUSES[id_]:
        raise MtSicsCodecError(f"no reply {id_} {status} with text: {_sample(raw)!r}", raw)
    fields = tuple(
        m[1] if m[1] is not None else m[2] for m in _TEXT_FIELD.finditer(match["fields"])
    )
    quoted = match["fields"].count('"') // 2
    if id_ == "I0":
        # One list entry per line: the command's level, then its name in quotes.
        ok = len(fields) == 2 and quoted == 1 and fields[0].isdigit() and bool(fields[1])
    else:
        ok = len(fields) == 1 and quoted == 1
    if not ok:
        raise MtSicsCodecError(f"malformed {id_} reply: {_sample(raw)!r}", raw)
    return TextReply(id_, status, fields, raw)


def _sample(raw: bytes) -> bytes:
    return raw[:_SAMPLE_BYTES]


# -- framing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscardedReply:
    """Bytes thrown away before they became a line; ``sample`` is kept only for the log."""

    reason: Literal["half_line", "garbage"]
    sample: bytes


class ReplyFramer:
    """Cuts the byte stream from a device into reply lines.

    CR and LF each end a line and empty lines are skipped, so CR LF, a bridge that drops the
    CR and one that doubles it all frame alike; the codec, not the framer, decides whether a
    line means anything. A partial line is given up as ``half_line`` once the line has been
    silent for ``half_line_timeout`` or when :meth:`flush` is called before a new command:
    whatever has not ended by then belongs to an exchange that is over, and glued to the next
    reply it would corrupt that one too. Over-long lines are discarded whole as ``garbage``.
    """

    def __init__(self, *, max_length: int = 256, half_line_timeout: float = 0.2) -> None:
        if max_length < 1 or half_line_timeout <= 0:
            raise ValueError("max_length and half_line_timeout must be positive")
        self._max_length = max_length
        self._half_line_timeout = half_line_timeout
        self._line = bytearray()
        self._too_long = False
        self._last_byte_at: float | None = None

    def feed(self, data: bytes, now: float) -> list[bytes | DiscardedReply]:
        """Take bytes that arrived at ``now`` (any monotonic clock, in seconds)."""
        events = self.expire(now)
        for byte in data:
            if byte in (0x0D, 0x0A):
                event = self._end_line()
                if event is not None:
                    events.append(event)
                continue
            self._last_byte_at = now
            if self._too_long:
                continue
            if len(self._line) >= self._max_length:
                events.append(DiscardedReply("garbage", bytes(self._line[:_SAMPLE_BYTES])))
                self._too_long = True
                self._line.clear()
            else:
                self._line.append(byte)
        return events

    def expire(self, now: float) -> list[bytes | DiscardedReply]:
        """Give up on a partial line that has been silent for too long."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        events: list[bytes | DiscardedReply] = []
        events.extend(self.flush())
        return events

    def flush(self) -> list[DiscardedReply]:
        """Give up on whatever partial line is pending, now."""
        pending = self._last_byte_at is not None and not self._too_long
        sample = bytes(self._line[:_SAMPLE_BYTES])
        self._reset()
        return [DiscardedReply("half_line", sample)] if pending else []

    def deadline(self) -> float | None:
        """When a pending partial line becomes a half line; ``None`` when nothing is pending."""
        if self._last_byte_at is None:
            return None
        return self._last_byte_at + self._half_line_timeout

    def _end_line(self) -> bytes | None:
        line = None if self._too_long or not self._line else bytes(self._line)
        self._reset()
        return line

    def _reset(self) -> None:
        self._line.clear()
        self._too_long = False
        self._last_byte_at = None
