"""TSPL (TSC, Gprinter and their many clones) from the label layout: pure functions over bytes.

Kept apart from any transport, as :mod:`device_drivers.printers.zpl` is, so every quoting
rule is tested from bytes alone. What a job looks like (TSC's TSPL/TSPL2 programming manual):

- One command per line, ended by CR LF. ``SIZE w mm,h mm`` and ``GAP g mm,0 mm`` set up the
  label, ``CLS`` clears the image buffer, ``TEXT``, ``BARCODE`` and ``QRCODE`` draw into it,
  and ``PRINT n`` prints it ``n`` times. Nothing comes out before ``PRINT``: a job cut off
  mid-way prints nothing.
- String parameters are in double quotes. A double quote inside one is written ``\\["]``;
  there is no other escape we rely on, so a text holding ``\\[`` (which the printer might
  read as the start of an escape) is refused rather than guessed at. CR and LF end the
  command, so a text holding them (or any control character) is refused too: otherwise an
  item name could end the ``TEXT`` command and start one of its own (``\\r\\nPRINT 99``).
- ``<ESC>!?`` is an immediate command: the printer answers one status byte as soon as it
  reads it, even in the middle of a job (bit 0 head open, 1 paper jam, 2 paper out, 3 ribbon
  out, 4 paused, 5 printing, 6 cover open, 7 other error; ``0x00`` ready).
- ``REM`` starts a comment line; the job id travels in one, so a job can be traced.
- Coordinates are dots, as in the layout (203 dpi: 8 dots per mm). Text uses the built-in
  bitmap font ``"3"`` (16 x 24 dots) scaled by whole multiples to the layout's height, and
  ``"TSS24.BF2"`` (the simplified Chinese font of printers sold in China) for anything not
  ASCII, with ``CODEPAGE UTF-8``. Not verified on hardware: which firmware takes UTF-8 for
  that font; older units want GB 2312.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_drivers.errors import RejectedInputError
from device_drivers.printers.base import JOB_ID_PATTERN, LabelDataError
from device_drivers.printers.zpl import Code128, Label, LabelField, QrCode, Text

__all__ = [
    "JOB_COMMENT_PREFIX",
    "STATUS_REQUEST",
    "TsplStatus",
    "build_tspl",
    "parse_status_byte",
    "quote",
]

STATUS_REQUEST = b"\x1b!?"
"""``<ESC>!?``: answered at once with one status byte."""

JOB_COMMENT_PREFIX = "jxc-job:"
DOTS_PER_MM = 8
"""203 dpi, the resolution the layouts are drawn for."""

_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_BASE_FONT_HEIGHT = 24


def quote(text: str, what: str = "text") -> str:
    """``text`` as a TSPL string parameter, quotes included; refuses what could escape it."""
    if _FORBIDDEN.search(text):
        raise LabelDataError(f"{what} must not contain control characters: {text!r}")
    if "\\[" in text:
        raise LabelDataError(f"{what} must not contain '\\[' (a TSPL escape): {text!r}")
    return '"' + text.replace('"', '\\["]') + '"'


def build_tspl(
    label: Label, *, job_id: str | None = None, gap_mm: float = 2.0, quantity: int = 1
) -> bytes:
    """The whole job for ``label``: set-up, drawing and ``PRINT``, UTF-8 encoded."""
    if not 1 <= quantity <= 99_999:
        raise LabelDataError(f"quantity must be 1..99999, got {quantity}")
    if not 0 <= gap_mm <= 50:
        raise LabelDataError(f"gap must be 0..50 mm, got {gap_mm}")
    lines: list[str] = []
    if job_id is not None:
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise LabelDataError(f"job id {job_id!r} must be 1-64 of A-Z a-z 0-9 . _ : -")
        lines.append(f"REM {JOB_COMMENT_PREFIX}{job_id}")
    width = label.width_dots if label.width_dots is not None else 812
    length = label.length_dots if label.length_dots is not None else 609
    lines += [
        f"SIZE {_mm(width)} mm,{_mm(length)} mm",
        f"GAP {gap_mm:g} mm,0 mm",
        "CODEPAGE UTF-8",
        "DIRECTION 1",
        "CLS",
    ]
    lines += [_field(item) for item in label.fields]
    lines.append(f"PRINT {quantity}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _mm(dots: int) -> str:
    if not 8 <= dots <= 32000:
        raise LabelDataError(f"label size must be 8..32000 dots, got {dots}")
    return f"{dots / DOTS_PER_MM:g}"


def _field(item: LabelField) -> str:
    if isinstance(item, Text):
        if item.text.isascii():
            scale = max(1, min(10, round(item.height / _BASE_FONT_HEIGHT)))
            return f'TEXT {item.x},{item.y},"3",0,{scale},{scale},{quote(item.text)}'
        return f'TEXT {item.x},{item.y},"TSS24.BF2",0,1,1,{quote(item.text)}'
    if isinstance(item, Code128):
        readable = 1 if item.human_readable else 0
        narrow = max(1, min(10, item.module_width))
        return (
            f'BARCODE {item.x},{item.y},"128",{item.height},{readable},0,{narrow},{narrow},'
            f"{quote(item.data, 'barcode data')}"
        )
    if isinstance(item, QrCode):
        cell = max(1, min(10, item.magnification))
        return (
            f"QRCODE {item.x},{item.y},{item.error_correction},{cell},A,0,"
            f"{quote(item.data, 'QR data')}"
        )
    raise LabelDataError(f"{type(item).__name__} is not drawn by the TSPL driver yet")


@dataclass(frozen=True, slots=True)
class TsplStatus:
    """The one status byte, bit by bit."""

    head_open: bool
    paper_jam: bool
    paper_out: bool
    ribbon_out: bool
    paused: bool
    printing: bool
    cover_open: bool
    other_error: bool

    @property
    def problems(self) -> list[str]:
        names = (
            ("head open", self.head_open),
            ("paper jam", self.paper_jam),
            ("paper out", self.paper_out),
            ("ribbon out", self.ribbon_out),
            ("paused", self.paused),
            ("cover open", self.cover_open),
            ("printer error", self.other_error),
        )
        return [name for name, on in names if on]


def parse_status_byte(reply: bytes) -> TsplStatus:
    """Read the answer to ``<ESC>!?``; a reply of any other length is refused."""
    if len(reply) != 1:
        raise RejectedInputError("garbled_status", f"a TSPL status is one byte, got {reply!r}")
    bits = reply[0]
    return TsplStatus(*(bool(bits & (1 << n)) for n in range(8)))
