"""From bytes on a serial line to scans: a pure codec, with no port and no real clock.

Kept apart from the transport so every rule about what counts as a line, and what a line
means, can be tested from bytes alone (with hypothesis) and reused by any transport that
carries scanner lines: a serial port today, a TCP bridge tomorrow.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Literal

from device_drivers.errors import DeviceConfigError, InvalidGs1Error, RejectedInputError
from device_drivers.scanners.base import GS1_SYMBOLOGIES, Gs1Data, Gs1Mode, Scan
from device_drivers.scanners.gs1 import (
    GS,
    RETAIL_SYMBOLOGIES,
    check_retail_symbol,
    looks_like_digital_link,
    looks_like_gs1,
    parse_digital_link,
    parse_gs1,
)

__all__ = [
    "DiscardedLine",
    "FramingReason",
    "LineFrame",
    "LineFramer",
    "check_fnc1_separator",
    "parse_line",
    "split_symbology",
]

FramingReason = Literal["half_line", "too_long", "not_printable"]

_CR, _LF = 0x0D, 0x0A
_PRINTABLE = frozenset(range(0x20, 0x7F))
_SAMPLE_BYTES = 32
_AIM_IDENTIFIER = re.compile(r"\][A-Za-z][0-9A-Za-z]")


@dataclass(frozen=True, slots=True)
class LineFrame:
    """A complete line, terminator removed, holding only bytes a scanner may send."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class DiscardedLine:
    """A line thrown away whole; ``sample`` is its start, kept only for the log."""

    reason: FramingReason
    sample: bytes


FramerEvent = LineFrame | DiscardedLine


def check_fnc1_separator(separator: str) -> str:
    """Refuse a stand-in for FNC1 that could also be data or a line end.

    Scanners that cannot send GS are set to a rare punctuation mark (usually ``|``); a
    letter, a digit or CR would make element strings or lines impossible to tell apart.
    """
    if len(separator) != 1 or not (separator == GS or ord(separator) in _PRINTABLE):
        raise DeviceConfigError(
            f"fnc1_separator must be GS or one printable ASCII character, got {separator!r}"
        )
    if separator != GS and (separator.isalnum() or separator == " "):
        raise DeviceConfigError(f"fnc1_separator {separator!r} could be part of the data")
    return separator


class LineFramer:
    """Cuts a byte stream into lines and says why any line was thrown away.

    CR and LF both end a line and empty lines are skipped, so a scanner sending CR, LF or
    CRLF frames the same whatever the configuration claims: a mismatch there is the most
    common setup mistake and costs nothing to tolerate.

    A half line is detected by silence since the last byte rather than by age of the line,
    because a long GS1 DataMatrix at 9600 baud can legitimately take longer than the timeout
    to arrive, while a scanner never pauses inside a line. Each discarded line is reported
    exactly once, with the first thing found wrong with it.
    """

    def __init__(
        self,
        *,
        max_length: int = 256,
        half_line_timeout: float = 0.3,
        fnc1_separator: str = GS,
    ) -> None:
        if max_length < 1:
            raise DeviceConfigError(f"max_length must be positive, got {max_length}")
        if half_line_timeout <= 0:
            raise DeviceConfigError(f"half_line_timeout must be positive, got {half_line_timeout}")
        self._max_length = max_length
        self._half_line_timeout = half_line_timeout
        self._allowed = _PRINTABLE | {ord(GS), ord(check_fnc1_separator(fnc1_separator))}
        self._line = bytearray()
        self._fault: FramingReason | None = None
        self._fault_reported = False
        self._sample = b""
        self._last_byte_at: float | None = None

    def feed(self, data: bytes, now: float) -> list[FramerEvent]:
        """Take bytes that arrived at ``now`` (any monotonic clock, in seconds)."""
        events = self.expire(now)
        for byte in data:
            if byte in (_CR, _LF):
                event = self._end_line()
                if event is not None:
                    events.append(event)
                continue
            self._last_byte_at = now
            if self._fault is not None:
                continue  # discarding the rest of a bad line
            if byte not in self._allowed:
                self._fault = "not_printable"
                self._sample = bytes(self._line[:_SAMPLE_BYTES]) + bytes([byte])
                self._line.clear()
            elif len(self._line) >= self._max_length:
                self._fault = "too_long"
                self._fault_reported = True
                events.append(DiscardedLine("too_long", bytes(self._line[:_SAMPLE_BYTES])))
                self._line.clear()
            else:
                self._line.append(byte)
        return events

    def expire(self, now: float) -> list[FramerEvent]:
        """Give up on a pending partial line once the line has been silent long enough."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        if self._fault is None:
            event: DiscardedLine | None = DiscardedLine(
                "half_line", bytes(self._line[:_SAMPLE_BYTES])
            )
        else:
            event = self._unreported_fault()
        self._reset()
        return [event] if event is not None else []

    def deadline(self) -> float | None:
        """When a pending partial line becomes a half line; ``None`` when nothing is pending."""
        if self._last_byte_at is None:
            return None
        return self._last_byte_at + self._half_line_timeout

    def _end_line(self) -> FramerEvent | None:
        event: FramerEvent | None
        if self._fault is not None:
            event = self._unreported_fault()
        elif self._line:
            event = LineFrame(bytes(self._line))
        else:
            event = None
        self._reset()
        return event

    def _unreported_fault(self) -> DiscardedLine | None:
        if self._fault is None or self._fault_reported:
            return None
        return DiscardedLine(self._fault, self._sample)

    def _reset(self) -> None:
        self._line.clear()
        self._fault = None
        self._fault_reported = False
        self._sample = b""
        self._last_byte_at = None


def split_symbology(text: str) -> tuple[str | None, str]:
    """Separate an AIM identifier (``]`` + code letter + modifier) from the payload."""
    if _AIM_IDENTIFIER.match(text):
        return text[:3], text[3:]
    return None, text


def parse_line(
    raw: bytes,
    *,
    device_id: str,
    received_at: datetime.datetime,
    fnc1_separator: str = GS,
    gs1: Gs1Mode = "auto",
    gs1_expected_ais: frozenset[str] = frozenset(),
) -> Scan:
    """Turn one framed line into a scan, or raise :class:`RejectedInputError` saying why not.

    It re-checks the bytes itself instead of trusting the framer, so no caller can turn
    garbage into a scan by skipping a step. ``gs1_expected_ais`` are the AIs this scanner's
    labels carry, so fields run together by a dropped FNC1 can be caught (see
    :mod:`device_drivers.scanners.gs1`). An EAN/UPC symbol (``]E0`` ... ``]E4``) with a
    wrong check digit is refused like a GS1 label with one (``gs1_invalid``), unless ``gs1``
    is ``never``, which takes every line as raw text.
    """
    separator = check_fnc1_separator(fnc1_separator)
    allowed = _PRINTABLE | {ord(GS), ord(separator)}
    if not raw or any(byte not in allowed for byte in raw):
        raise RejectedInputError(
            "not_printable", f"line holds bytes a scanner cannot send: {raw!r}"
        )
    symbology, payload = split_symbology(raw.decode("ascii"))
    gs1_data: Gs1Data | None = None
    if _wants_digital_link(symbology, payload, gs1):
        # A URI is never element strings, so no FNC1 stand-in is swapped inside it.
        gs1_data = parse_digital_link(payload)
    elif _wants_gs1(symbology, payload.replace(separator, GS), gs1):
        payload = payload.replace(separator, GS).lstrip(GS)
        if not payload:
            raise InvalidGs1Error(f"GS1 symbology {symbology} with no data")
        gs1_data = parse_gs1(payload, expected_ais=gs1_expected_ais)
    elif not payload:
        raise RejectedInputError("empty", f"symbology identifier {symbology} with no data")
    elif symbology in RETAIL_SYMBOLOGIES and gs1 != "never":
        check_retail_symbol(symbology, payload)
    return Scan(
        device_id=device_id,
        raw=raw,
        data=payload,
        symbology=symbology,
        gs1=gs1_data,
        received_at=received_at,
    )


def _wants_digital_link(symbology: str | None, payload: str, mode: Gs1Mode) -> bool:
    """A GS1 Digital Link URI (in a plain QR ``]Q1`` or DataMatrix ``]d1``, usually).

    An http(s) URL is read as one when it looks like one (a primary key AI in its path), or
    when GS1 is expected anyway (a GS1 symbology, or ``always``): then a URL that is not a
    valid Digital Link is refused instead of being booked as a plain code.
    """
    if mode == "never" or payload.partition("://")[0].lower() not in ("http", "https"):
        return False
    return mode == "always" or symbology in GS1_SYMBOLOGIES or looks_like_digital_link(payload)


def _wants_gs1(symbology: str | None, payload: str, mode: Gs1Mode) -> bool:
    if mode == "never":
        return False
    if mode == "always" or symbology in GS1_SYMBOLOGIES:
        return True
    return symbology is None and looks_like_gs1(payload.lstrip(GS))
