"""ZPL II from a small label model: pure functions from values to the bytes a Zebra prints.

Kept apart from any transport so every escaping and symbology rule is tested from bytes
alone, and so the same label goes to a printer on TCP 9100, on a serial line, or to a file.

What was checked against Zebra's ZPL II Programming Guide (45541L rev. A, and the current
docs.zebra.com pages) and Zebra's support note "Creating GS1 barcodes ... using ZPL":

- ``^FD`` data may contain any printable character except the format and control prefixes
  ``^`` and ``~``; those (and any byte) can be given in hex after ``^FH``, whose default
  indicator is ``_`` and which must precede each ``^FD`` it applies to. So every text field
  here is ``^FH_`` and ``^``, ``~``, ``_`` itself and control characters go as ``_XX``.
- ``^BCo,h,f,g,e,m`` is Code 128; in mode ``N`` the field data selects subsets with
  invocation codes: ``>:`` start B, ``>;`` start C, ``>5`` switch to C, ``>6`` switch from C
  to B, ``>8`` FNC1. Subset C takes digit pairs, and an unpaired digit before a shift is
  silently dropped by the printer, so the encoder never leaves one. Zebra's own GS1-128
  example is ``>;>8011234567890123421123456>810>6ABC123``: start C, FNC1, pairs, FNC1 after
  the variable-length serial, then B for the alphanumeric lot. We emit the same shape.
- Zebra's table of invocation codes for the characters ``^ > ~`` in subset B is garbled in
  every copy we could read (which of ``><``, ``>0``, ``>=`` means which), so Code 128 and
  GS1-128 data containing them is refused rather than guessed at.
- ``^BXo,h,200,c,r,f,g`` is Data Matrix ECC 200; ``g`` is the escape character (its default
  changed between firmware versions, ``_`` on some and ``~`` on others, so we always set
  ``_``); ``_1`` is FNC1 and ``__`` a literal underscore. ``^FH`` hex decoding runs before
  that escape processing, which is why Data Matrix fields use ``^FH\\`` instead of ``_``.
- ``^BQa,b,c,d,e`` is QR (model 2 recommended); the field data starts with the error
  correction level and the input mode, ``QA,`` = level Q, automatic input. Automatic input
  cannot carry bytes 0x80-0x9F and 0xE0-0xFF, so QR data is limited to ASCII here.

- ``^FX`` is a comment (the one format command allowed outside a format), and control
  commands act on arrival even inside a format (Zebra's Software Integrator Guide), which
  is why a job that carries a ``~`` is refused rather than sent.

Not verified on hardware: ``^CI28`` (UTF-8 field data) is what we rely on for Chinese item
names, and those also need a font with CJK glyphs on the printer (``Text.font_file``).

GS1 rules (which AIs need a separator, check digits, dates) come from ``biip`` through the
scanner codec, so a label we print is one our own scanners accept.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from biip import BiipException
from biip.gs1_application_identifiers import GS1ApplicationIdentifier

from device_drivers.errors import InvalidGs1Error
from device_drivers.printers.base import JOB_ID_PATTERN, LabelDataError
from device_drivers.scanners.gs1 import GS, parse_gs1

__all__ = [
    "JOB_COMMENT_PREFIX",
    "Code128",
    "DataMatrix",
    "Gs1Code128",
    "Gs1DataMatrix",
    "Gs1Element",
    "Label",
    "LabelField",
    "QrCode",
    "Text",
    "build_zpl",
    "code128_field_data",
    "escape_field_data",
    "gs1_128_field_data",
    "gs1_check_digit",
    "gs1_datamatrix_field_data",
    "gs1_human_readable",
    "receiving_carton_label",
    "sscc",
    "sscc_check_digit",
    "stamp_job_format",
]

JOB_COMMENT_PREFIX = "jxc-job:"
"""How a job id is written into its label (``^FXjxc-job:<id>^FS``): invisible on paper,
visible to anything that reads the format back, the printer twin included."""

Gs1Element = tuple[str, str]
"""An Application Identifier and its value, e.g. ``("10", "LOT42")``."""

_MAX_FIELD_BYTES = 3072  # ^FD limit from the programming guide
_MAX_DOTS = 32000
_CODE128_REFUSED = frozenset("^>~")
_ASCII_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class Text:
    """A line of text. ``font_file`` (e.g. ``E:SIMSUN.TTF``) selects a downloaded font via
    ``^A@``, which Chinese text needs; otherwise the built-in scalable font 0."""

    x: int
    y: int
    text: str
    height: int = 30
    width: int | None = None
    font_file: str | None = None


@dataclass(frozen=True, slots=True)
class Code128:
    """A plain Code 128 symbol of printable ASCII (without ``^ > ~``)."""

    x: int
    y: int
    data: str
    height: int = 100
    module_width: int = 2
    human_readable: bool = True


@dataclass(frozen=True, slots=True)
class Gs1Code128:
    """A GS1-128 symbol; the human-readable line is printed as text with the AIs in
    parentheses, since the printer's own line would show the raw digits run together."""

    x: int
    y: int
    elements: tuple[Gs1Element, ...]
    height: int = 120
    module_width: int = 2
    human_readable: bool = True


@dataclass(frozen=True, slots=True)
class DataMatrix:
    """A plain ECC 200 Data Matrix of printable ASCII."""

    x: int
    y: int
    data: str
    module: int = 6


@dataclass(frozen=True, slots=True)
class Gs1DataMatrix:
    """A GS1 Data Matrix: FNC1 first, then the element strings with FNC1 separators."""

    x: int
    y: int
    elements: tuple[Gs1Element, ...]
    module: int = 6


@dataclass(frozen=True, slots=True)
class QrCode:
    """A model 2 QR code of printable ASCII (a URL, a document number)."""

    x: int
    y: int
    data: str
    magnification: int = 5
    error_correction: Literal["H", "Q", "M", "L"] = "M"


LabelField = Text | Code128 | Gs1Code128 | DataMatrix | Gs1DataMatrix | QrCode


@dataclass(frozen=True, slots=True)
class Label:
    """One label format. Sizes are in dots; ``None`` leaves the printer's setting alone."""

    fields: tuple[LabelField, ...]
    width_dots: int | None = None
    length_dots: int | None = None
    quantity: int = 1
    comments: tuple[str, ...] = ()


def build_zpl(label: Label, *, job_id: str | None = None) -> bytes:
    """The whole ``^XA … ^XZ`` format for ``label``, UTF-8 encoded.

    ``job_id`` goes in as the first command, a comment, so a format can be traced to its
    job by whoever receives it; it changes nothing on paper.
    """
    if label.quantity < 1 or label.quantity > 99_999_999:
        raise LabelDataError(f"quantity must be 1..99999999, got {label.quantity}")
    parts = ["^XA"]
    if job_id is not None:
        if not JOB_ID_PATTERN.fullmatch(job_id):
            raise LabelDataError(f"job id {job_id!r} must be 1-64 of A-Z a-z 0-9 . _ : -")
        parts.append(f"^FX{JOB_COMMENT_PREFIX}{job_id}^FS")
    for comment in label.comments:
        parts.append(f"^FX{_comment_text(comment)}^FS")
    parts.append("^CI28")
    if label.width_dots is not None:
        parts.append(f"^PW{_dots(label.width_dots, 'width_dots')}")
    if label.length_dots is not None:
        parts.append(f"^LL{_dots(label.length_dots, 'length_dots')}")
    parts.append(f"^PQ{label.quantity}")
    for item in label.fields:
        parts.extend(_field_commands(item))
    parts.append("^XZ")
    return ("\n".join(parts) + "\n").encode("utf-8")


# -- fields -----------------------------------------------------------------------------


def _field_commands(item: LabelField) -> list[str]:
    origin = f"^FO{_dots(item.x, 'x')},{_dots(item.y, 'y')}"
    if isinstance(item, Text):
        return [origin + _text_body(item)]
    if isinstance(item, Code128):
        readable = "Y" if item.human_readable else "N"
        return [
            f"{origin}^BY{_module(item.module_width)}"
            f"^BCN,{_dots(item.height, 'height')},{readable},N,N"
            f"^FD{code128_field_data(item.data)}^FS"
        ]
    if isinstance(item, Gs1Code128):
        commands = [
            f"{origin}^BY{_module(item.module_width)}^BCN,{_dots(item.height, 'height')},N,N,N"
            f"^FD{gs1_128_field_data(item.elements)}^FS"
        ]
        if item.human_readable:
            below = Text(item.x, item.y + item.height + 8, gs1_human_readable(item.elements), 24)
            commands.append(f"^FO{below.x},{below.y}" + _text_body(below))
        return commands
    if isinstance(item, DataMatrix):
        data = _datamatrix_text(_ascii_only(item.data, "Data Matrix"))
        return [_datamatrix_command(origin, item.module, data)]
    if isinstance(item, Gs1DataMatrix):
        return [_datamatrix_command(origin, item.module, gs1_datamatrix_field_data(item.elements))]
    if item.magnification < 1 or item.magnification > 10:
        raise LabelDataError(f"QR magnification must be 1..10, got {item.magnification}")
    if item.error_correction not in ("H", "Q", "M", "L"):
        raise LabelDataError(f"QR error correction must be H, Q, M or L: {item.error_correction!r}")
    data = escape_field_data(_ascii_only(item.data, "QR"), indicator="_")
    return [
        f"{origin}^BQN,2,{item.magnification}"
        f"^FH_^FD{item.error_correction}A,{_checked_length(data)}^FS"
    ]


def _text_body(item: Text) -> str:
    height = _dots(item.height, "height")
    width = _dots(item.width if item.width is not None else item.height, "width")
    if item.font_file is not None:
        if not re.fullmatch(r"[A-Z]:[A-Za-z0-9_.-]{1,16}", item.font_file):
            raise LabelDataError(f"font file {item.font_file!r} is not a printer file name")
        font = f"^A@N,{height},{width},{item.font_file}"
    else:
        font = f"^A0N,{height},{width}"
    data = _checked_length(escape_field_data(item.text, indicator="_"))
    return f"{font}^FH_^FD{data}^FS"


def _datamatrix_command(origin: str, module: int, escaped: str) -> str:
    if module < 1 or module > 100:
        raise LabelDataError(f"Data Matrix module must be 1..100 dots, got {module}")
    data = _checked_length(escape_field_data(escaped, indicator="\\", keep="_"))
    return f"{origin}^BXN,{module},200,,,,_^FH\\^FD{data}^FS"


def escape_field_data(text: str, *, indicator: str = "_", keep: str = "") -> str:
    """``text`` made safe inside ``^FH<indicator>^FD … ^FS``.

    The prefixes ``^`` and ``~``, the indicator itself and control characters become
    ``<indicator>XX`` per UTF-8 byte; everything else, including non-ASCII text for
    ``^CI28``, stays as it is so the format remains readable. Characters in ``keep`` are
    never escaped (a Data Matrix escape sequence must reach the symbology as written).
    """
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char not in keep and (char in ("^", "~", indicator) or code < 0x20 or code == 0x7F):
            out.append("".join(f"{indicator}{byte:02X}" for byte in char.encode("utf-8")))
        elif 0xD800 <= code <= 0xDFFF:
            raise LabelDataError(f"unpaired surrogate U+{code:04X} cannot be printed")
        else:
            out.append(char)
    return "".join(out)


# -- Code 128 and GS1 -------------------------------------------------------------------


def code128_field_data(data: str) -> str:
    """Field data for ``^BC`` mode N: start in subset B, data as is."""
    if not data:
        raise LabelDataError("Code 128 data must not be empty")
    bad = sorted({c for c in data if c not in _ASCII_PRINTABLE or c in _CODE128_REFUSED})
    if bad:
        raise LabelDataError(f"Code 128 data may not contain {''.join(bad)!r}")
    return _checked_length(">:" + data)


def gs1_128_field_data(elements: Sequence[Gs1Element]) -> str:
    """Field data for ``^BC`` mode N that encodes FNC1 + the element strings.

    Starts in subset C behind FNC1 (every AI starts with digits), takes digit pairs in C,
    drops to B for anything else or for a single digit, and goes back to C for a run of
    four or more digits. FNC1 follows every variable-length element except the last.
    """
    tokens = _gs1_tokens(elements)
    out = [">;"]
    subset = "C"
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == GS:
            out.append(">8")
            i += 1
            continue
        run = _digit_run(tokens, i)
        if subset == "C":
            if run >= 2:
                out.append(token + tokens[i + 1])
                i += 2
                continue
            out.append(">6")
            subset = "B"
            continue
        if run >= 4:
            if run % 2:
                out.append(token)
                i += 1
            out.append(">5")
            subset = "C"
            continue
        out.append(token)
        i += 1
    return _checked_length("".join(out))


def gs1_datamatrix_field_data(elements: Sequence[Gs1Element]) -> str:
    """Field data for ``^BX`` quality 200 with escape character ``_``: ``_1`` is FNC1."""
    tokens = _gs1_tokens(elements)
    return "".join("_1" if token == GS else _datamatrix_text(token) for token in tokens)


def gs1_human_readable(elements: Sequence[Gs1Element]) -> str:
    """``(01)09506000134352(10)LOT42``: how GS1 wants the text under the symbol."""
    _validated(elements)
    return "".join(f"({ai}){value}" for ai, value in elements)


def _gs1_tokens(elements: Sequence[Gs1Element]) -> list[str]:
    checked = _validated(elements)
    tokens = [GS]
    for index, (ai, value) in enumerate(checked):
        tokens.extend(ai + value)
        if _separator_required(ai) and index < len(checked) - 1:
            tokens.append(GS)
    return tokens


def _validated(elements: Sequence[Gs1Element]) -> list[Gs1Element]:
    if not elements:
        raise LabelDataError("a GS1 symbol needs at least one element")
    checked: list[Gs1Element] = []
    for ai, value in elements:
        try:
            known = GS1ApplicationIdentifier.extract(ai)
        except (BiipException, ValueError) as exc:
            raise LabelDataError(f"unknown GS1 Application Identifier {ai!r}") from exc
        if known.ai != ai or not re.fullmatch(known.pattern, ai + value):
            raise LabelDataError(f"({ai}) {value!r} does not fit {known.format}")
        if any(c in _CODE128_REFUSED for c in value):
            raise LabelDataError(f"({ai}) {value!r}: '>' cannot be encoded safely")
        checked.append((ai, value))
    joined = "".join(
        ai + value + (GS if _separator_required(ai) and i < len(checked) - 1 else "")
        for i, (ai, value) in enumerate(checked)
    )
    try:
        parse_gs1(joined)  # check digits, dates, duplicates: what a scanner will demand
    except InvalidGs1Error as exc:
        raise LabelDataError(f"GS1 data would not scan: {exc.detail}") from exc
    return checked


def _separator_required(ai: str) -> bool:
    return GS1ApplicationIdentifier.extract(ai).separator_required


def _digit_run(tokens: Sequence[str], start: int) -> int:
    end = start
    while end < len(tokens) and tokens[end] in _DIGITS:
        end += 1
    return end - start


def _datamatrix_text(text: str) -> str:
    return text.replace("_", "__")


# -- check digits and SSCC --------------------------------------------------------------


def gs1_check_digit(digits: str) -> str:
    """The GS1 mod-10 check digit for ``digits`` (a GTIN or SSCC without its last digit).

    Weights 3 and 1 alternate from the rightmost digit, which always weighs 3.
    """
    if not _all_digits(digits):
        raise LabelDataError(f"check digits are computed over digits, not {digits!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def sscc_check_digit(first_17: str) -> str:
    if len(first_17) != 17:
        raise LabelDataError(f"an SSCC has 17 digits before its check digit, got {first_17!r}")
    return gs1_check_digit(first_17)


def sscc(extension_digit: int, company_prefix: str, serial_reference: str) -> str:
    """An 18-digit SSCC: extension digit, GS1 company prefix, serial reference, check digit.

    The serial reference is left-padded with zeros to fill the 16 digits after the
    extension digit, so callers can keep a plain counter per company prefix.
    """
    if not 0 <= extension_digit <= 9:
        raise LabelDataError(f"extension digit must be 0..9, got {extension_digit}")
    if not (_all_digits(company_prefix) and 6 <= len(company_prefix) <= 12):
        raise LabelDataError(f"GS1 company prefix must be 6-12 digits, got {company_prefix!r}")
    room = 16 - len(company_prefix)
    if not _all_digits(serial_reference) or len(serial_reference) > room:
        raise LabelDataError(
            f"serial reference must be at most {room} digits after prefix {company_prefix}"
        )
    body = f"{extension_digit}{company_prefix}{serial_reference.zfill(room)}"
    return body + sscc_check_digit(body)


# -- a template -------------------------------------------------------------------------


def receiving_carton_label(
    *,
    item_code: str,
    description: str,
    gtin: str,
    lot: str,
    expiry: datetime.date,
    quantity: int,
    uom: str = "",
    sscc_code: str | None = None,
    font_file: str | None = None,
) -> Label:
    """The label a receiving dock sticks on an accepted carton (4 x 6 in at 203 dpi).

    The GS1-128 carries (01) GTIN, (10) lot, (17) expiry and (37) count, the fields the
    receiving station reads back; an SSCC, when given, gets its own (00) symbol. GS1 ties
    (37) to (02) on logistic labels; we keep (01) because the station looks items up by it.
    ``font_file`` is needed when the description is Chinese.
    """
    if not 1 <= quantity <= 99_999_999:
        raise LabelDataError(f"count of trade items must be 1..99999999, got {quantity}")
    elements: tuple[Gs1Element, ...] = (
        ("01", gtin),
        ("10", lot),
        ("17", expiry.strftime("%y%m%d")),
        ("37", str(quantity)),
    )
    fields: list[LabelField] = [
        Text(40, 30, item_code, 50, font_file=font_file),
        Text(40, 95, description, 36, font_file=font_file),
        Text(40, 150, f"LOT {lot}", 36),
        Text(40, 200, f"EXP {expiry.isoformat()}", 36),
        Text(40, 250, f"QTY {quantity} {uom}".rstrip(), 36, font_file=font_file),
        Gs1Code128(40, 320, elements, height=160),
        Gs1DataMatrix(600, 30, elements, module=6),
    ]
    if sscc_code is not None:
        fields.append(Gs1Code128(40, 560, (("00", sscc_code),), height=160))
    return Label(tuple(fields), width_dots=812, length_dots=1218)


# -- small checks -----------------------------------------------------------------------


def _dots(value: int, name: str) -> int:
    if not 0 <= value <= _MAX_DOTS:
        raise LabelDataError(f"{name} must be 0..{_MAX_DOTS} dots, got {value}")
    return value


def _module(width: int) -> int:
    if not 1 <= width <= 10:
        raise LabelDataError(f"module width must be 1..10 dots, got {width}")
    return width


def _ascii_only(data: str, symbology: str) -> str:
    if not data:
        raise LabelDataError(f"{symbology} data must not be empty")
    bad = sorted({c for c in data if c not in _ASCII_PRINTABLE})
    if bad:
        raise LabelDataError(f"{symbology} data must be printable ASCII, got {''.join(bad)!r}")
    return data


def _all_digits(text: str) -> bool:
    return bool(text) and all(c in _DIGITS for c in text)


def _checked_length(data: str) -> str:
    if len(data.encode("utf-8")) > _MAX_FIELD_BYTES:
        raise LabelDataError(f"field data is over {_MAX_FIELD_BYTES} bytes")
    return data


def _comment_text(comment: str) -> str:
    if any(c in "^~" for c in comment) or not comment.isprintable():
        raise LabelDataError(f"comment {comment!r} may not contain ^, ~ or control characters")
    return comment


# -- jobs -------------------------------------------------------------------------------

_QUANTITY = re.compile(rb"\^PQ([0-9]{1,8})")
_JOB_COMMENT = re.compile(rb"\^FX" + re.escape(JOB_COMMENT_PREFIX.encode()) + rb"([^\^~]*)")


def stamp_job_format(zpl: bytes, job_id: str) -> tuple[bytes, int]:
    """Check that ``zpl`` is one format fit to send as a job, stamp it with ``job_id``.

    Returns the bytes to send and the label quantity (``^PQ``), which the driver needs to
    tell from the printer's label count whether the whole job came out. A format carrying
    ``~`` is refused: a control command inside a job runs the moment it arrives (``~JA``
    would cancel other jobs), and our builder never writes one.
    """
    body = zpl.strip(b" \t\r\n")
    if not body.startswith(b"^XA") or not body.endswith(b"^XZ"):
        raise LabelDataError("a print job is one format from ^XA to ^XZ")
    if body.count(b"^XA") != 1 or body.count(b"^XZ") != 1:
        raise LabelDataError("a print job holds exactly one ^XA ... ^XZ format")
    if b"~" in body:
        raise LabelDataError("a print job may not contain '~' (control commands run at once)")
    stamped = _JOB_COMMENT.findall(body)
    if stamped and stamped != [job_id.encode()]:
        raise LabelDataError(f"format is stamped for job {stamped!r}, not {job_id!r}")
    if not stamped:
        body = b"^XA^FX" + f"{JOB_COMMENT_PREFIX}{job_id}".encode() + b"^FS" + body[3:]
    quantities = _QUANTITY.findall(body)
    quantity = int(quantities[-1]) if quantities else 1
    if quantity < 1:
        raise LabelDataError("^PQ0 prints nothing")
    return body + b"\n", quantity
