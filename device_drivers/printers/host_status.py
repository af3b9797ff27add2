"""What a Zebra printer answers to ``~HS``, ``~HI`` and a label-counter query, as values.

Pure functions from bytes, apart from the transport, so the rule that matters most (a
missing, partial or garbled status is never "ready") is tested from bytes alone.

Checked against the ZPL II Programming Guide and docs.zebra.com (``~HS``, ``~HI``,
``device.host_status``):

- ``~HS`` answers three strings, each ``STX … ETX CR LF``:
  ``aaa,b,c,dddd,eee,f,g,h,iii,j,k,l`` (interface settings, paper out, pause, label length
  in dots, formats in receive buffer, buffer full, communications diagnostic mode, partial
  format, unused, corrupt RAM, under temperature, over temperature);
  ``mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www`` (function settings, unused, head up, ribbon out,
  thermal transfer mode, print mode 0 rewind … 4 applicator and up to 9 on newer firmware,
  print width mode, label waiting, labels remaining in batch, format while printing
  (always 1), graphics stored); ``xxxx,y`` (password, static RAM installed).
- Current Zebra docs say the printer sends *no* reply to ``~HS`` while media or ribbon is
  out, the head is open, the rewinder is full or the head is over temperature. Silence is
  therefore a fault to report, and never taken for health.
- ``~HI`` answers ``model,firmware,dots/mm,memory,options`` (e.g.
  ``ZT410-203dpi,V75.20.01Z,8,8176KB``); we accept it with or without STX/ETX framing.
- ``! U1 getvar "odometer.total_label_count"`` is the Set-Get-Do variable for the printer's
  lifetime label count, answered as a quoted number (``"1234"``), ``"?"`` when unknown. We
  found it in several independent Zebra client libraries and simulators, not on a Zebra
  manual page we could read, so the driver treats it as optional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_drivers.errors import RejectedInputError
from device_drivers.printers.base import PrinterStatus

__all__ = [
    "HOST_IDENTIFICATION_REQUEST",
    "HOST_STATUS_REQUEST",
    "LABEL_COUNTER_REQUEST",
    "HostIdentification",
    "host_identification_reply_length",
    "host_status_reply_length",
    "label_counter_reply_length",
    "parse_host_identification",
    "parse_host_status",
    "parse_label_counter",
]

HOST_STATUS_REQUEST = b"~HS"
HOST_IDENTIFICATION_REQUEST = b"~HI"
LABEL_COUNTER_REQUEST = b'! U1 getvar "odometer.total_label_count"\r\n'

_STX, _ETX = 0x02, 0x03
_FRAME_END = b"\x03\r\n"
_STATUS_FIELDS = (12, 11, 2)
_NUMBER = re.compile(rb"[0-9]{1,8}")
_QUOTED = re.compile(rb'\s*"([^"]*)"')


@dataclass(frozen=True, slots=True)
class HostIdentification:
    """Who the printer says it is; ``dots_per_mm`` 8 is 203 dpi, 12 is 300 dpi."""

    model: str
    firmware: str
    dots_per_mm: int | None
    memory_kb: int | None
    options: tuple[str, ...]


def host_status_reply_length(buffer: bytes) -> int | None:
    """How many bytes of ``buffer`` make up a complete ``~HS`` reply, ``None`` if not yet.

    Counts frame ends only; whether the frames hold a sane status is
    :func:`parse_host_status`'s job, so a garbled reply is still consumed whole.
    """
    end = 0
    for _ in _STATUS_FIELDS:
        found = buffer.find(_FRAME_END, end)
        if found < 0:
            return None
        end = found + len(_FRAME_END)
    return end


def parse_host_status(reply: bytes) -> PrinterStatus:
    """The status in a complete ``~HS`` reply; :class:`RejectedInputError` for anything else.

    Strict on purpose: three frames of comma-separated decimal numbers in the documented
    counts, nothing before, between or after. A reply cut short by a dropped connection, or
    noise on a serial line, must not come out as a printer that is ready.
    """
    frames = _frames(reply, len(_STATUS_FIELDS))
    values: list[list[int]] = []
    for number, (frame, expected) in enumerate(zip(frames, _STATUS_FIELDS, strict=True), 1):
        parts = frame.split(b",")
        if len(parts) != expected:
            raise _garbled(f"string {number} has {len(parts)} fields, expected {expected}")
        if not all(_NUMBER.fullmatch(part) for part in parts):
            raise _garbled(f"string {number} holds something other than numbers: {frame!r}")
        values.append([int(part) for part in parts])
    first, second, _third = values
    flags = first[1:3] + first[5:8] + first[9:12] + second[2:5] + second[7:8]
    if any(flag > 1 for flag in flags):
        raise _garbled(f"a flag is neither 0 nor 1 in {reply!r}")
    return PrinterStatus(
        online=True,
        paper_out=first[1] == 1,
        paused=first[2] == 1,
        label_length_dots=first[3],
        formats_in_buffer=first[4],
        buffer_full=first[5] == 1,
        diagnostic_mode=first[6] == 1,
        partial_format=first[7] == 1,
        corrupt_ram=first[9] == 1,
        under_temperature=first[10] == 1,
        over_temperature=first[11] == 1,
        head_open=second[2] == 1,
        ribbon_out=second[3] == 1,
        thermal_transfer=second[4] == 1,
        print_mode=second[5],
        label_waiting=second[7] == 1,
        labels_remaining=second[8],
        graphics_stored=second[10],
    )


def host_identification_reply_length(buffer: bytes) -> int | None:
    """A ``~HI`` reply is one line: complete at its CR LF."""
    found = buffer.find(b"\r\n")
    return None if found < 0 else found + 2


def parse_host_identification(reply: bytes) -> HostIdentification:
    """Model, firmware, resolution and memory from a ``~HI`` reply."""
    text = reply.strip(b"\r\n")
    if text[:1] == bytes([_STX]) and text[-1:] == bytes([_ETX]):
        text = text[1:-1]
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise _garbled_id(f"not ASCII: {reply!r}") from None
    parts = [part.strip() for part in decoded.split(",")]
    if len(parts) < 2 or not parts[0] or not parts[1] or not decoded.isprintable():
        raise _garbled_id(f"expected model,firmware,...: {reply!r}")
    dpm = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    memory = None
    if len(parts) > 3:
        match = re.fullmatch(r"(\d+)KB", parts[3])
        memory = int(match.group(1)) if match else None
    return HostIdentification(parts[0], parts[1], dpm, memory, tuple(parts[4:]))


def label_counter_reply_length(buffer: bytes) -> int | None:
    """A Set-Get-Do answer is complete at its closing quote (some firmware adds CR LF,
    which the driver discards before its next request)."""
    match = _QUOTED.match(buffer)
    return match.end() if match else None


def parse_label_counter(reply: bytes) -> int | None:
    """The lifetime label count, or ``None`` when the printer does not know the variable."""
    match = _QUOTED.match(reply)
    if match is None:
        raise RejectedInputError("garbled_counter", f"not a quoted value: {reply!r}")
    value = match.group(1)
    if value == b"?":
        return None
    if not value.isdigit() or not value.isascii():
        raise RejectedInputError("garbled_counter", f"label count is not a number: {value!r}")
    return int(value)


def _frames(reply: bytes, count: int) -> list[bytes]:
    frames: list[bytes] = []
    rest = reply
    for number in range(1, count + 1):
        if rest[:1] != bytes([_STX]):
            raise _garbled(f"string {number} does not start with STX: {reply!r}")
        end = rest.find(_FRAME_END)
        if end < 0:
            raise _garbled(f"string {number} is not ended by ETX CR LF: {reply!r}")
        body = rest[1:end]
        if _STX in body or _ETX in body:
            raise _garbled(f"string {number} has a stray STX or ETX: {reply!r}")
        frames.append(body)
        rest = rest[end + len(_FRAME_END) :]
    if rest:
        raise _garbled(f"{len(rest)} bytes after the last string: {reply!r}")
    return frames


def _garbled(detail: str) -> RejectedInputError:
    return RejectedInputError("garbled_status", detail)


def _garbled_id(detail: str) -> RejectedInputError:
    return RejectedInputError("garbled_identification", detail)
