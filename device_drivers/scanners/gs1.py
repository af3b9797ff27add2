"""GS1 element strings and GS1 Digital Link URIs from a scanner payload, refused when they
do not hold up.

``biip`` knows the Application Identifiers, check digits and date rules. This module adds
what a receiving dock needs on top: a GTIN or SSCC with a wrong check digit is an error
rather than a note on the element, and a variable-length field that swallowed the fields
after it (a scanner set up to drop FNC1) is detected and refused instead of being booked
with a lot number like ``LOT4217250600``.

What can and cannot be told about a lost FNC1 separator. Without the separator a
variable-length field (lot, serial, count...) simply goes on into the next element, and
biip, like any parser, reads it greedily. The data alone then says:

- **Always detected**: a variable-length field that reaches its maximum length and is
  followed by more data (biip must end it there, so it is not the last element of its
  segment); and a variable-length field whose tail reads as a fixed-length element that
  proves itself (a GTIN or SSCC with a good check digit, a valid date, a six-digit
  ``31nn``–``36nn`` measure): ``10LOT4217250600`` is refused, ``10LOT2012`` is not.
- **Detected when the expected AIs are configured** (``expected_ais``, per scanner): a
  variable-length field whose tail reads as a valid element of an expected AI that is
  missing from the scan. ``10LOT4221SN1`` with (21) expected is refused; a serial is what
  the label should have had, and it is sitting inside the lot.
- **Not detectable**: a variable-length field run into another variable-length field that
  nobody said to expect (``10ABC21XYZ`` is a perfectly valid lot "ABC21XYZ"), or into a
  field whose value carries no proof. Only configuration, or scanners set to send FNC1,
  can close that gap. Conversely a genuine lot that ends in a valid date is refused (a
  false alarm the dock can live with: the label gets relabelled, not misbooked).

Refusals for a lost separator are :class:`MissingSeparatorError`, an
:class:`~device_drivers.errors.InvalidGs1Error` (counted as ``gs1_invalid``) whose message
names the FNC1 separator, so the log says what to fix on the scanner.

Retail symbols (EAN-13, UPC-A, UPC-E, EAN-8) carry a GTIN with a check digit too, and a
misread one must not be booked under the wrong number: :func:`check_retail_symbol` checks
what a scanner sends under an EAN/UPC symbology identifier, and :func:`check_gtin` a bare
number that will be taken for a GTIN (keyboard entry, a scanner without identifiers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from biip import BiipException, ParseConfig
from biip.checksums import gs1_standard_check_digit
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.upc import Upc

from device_drivers.errors import InvalidGs1Error
from device_drivers.scanners.base import Gs1Data

__all__ = [
    "DIGITAL_LINK_PRIMARY_KEYS",
    "GS",
    "RETAIL_SYMBOLOGIES",
    "MissingSeparatorError",
    "check_expected_ais",
    "check_gtin",
    "check_retail_symbol",
    "looks_like_digital_link",
    "looks_like_gs1",
    "parse_digital_link",
    "parse_gs1",
]

GS = "\x1d"
"""How a later FNC1 reaches us; the codec maps any configured stand-in to it first."""

_CONFIG = ParseConfig(separator_chars=(GS,))

_STARTS_LIKE_KEY = re.compile(r"(?:00\d{18}|0[12]\d{14})")

# Fixed-length AIs whose value carries its own proof (a check digit, a calendar date, a
# measure of exactly six digits). Only these are trusted as evidence that a variable-length
# field ran into the next element: a lot may well end in "2012", but rarely in "17250630".
_SELF_CHECKING_AIS = frozenset({"00", "01", "02", "11", "12", "13", "15", "16", "17"})
_MEASURE_AI_GROUPS = frozenset({"31", "32", "33", "34", "35", "36"})


def looks_like_gs1(payload: str) -> bool:
    """Guess GS1 for a payload that came without an AIM identifier.

    Only a shape that a plain barcode is very unlikely to have counts: an SSCC or GTIN
    element first, or numeric AIs with FNC1 separators. An EAN-13 such as ``9506000134352``
    would otherwise read as AI (95) and become nonsense.
    """
    if _STARTS_LIKE_KEY.match(payload):
        return True
    return GS in payload and payload[:2].isdigit()


class MissingSeparatorError(InvalidGs1Error):
    """Variable-length fields ran together: the FNC1 separator between them was dropped."""


def check_expected_ais(expected_ais: Iterable[str]) -> frozenset[str]:
    """Refuse an expected AI that is not one, so a typo in a site file fails at start-up."""
    ais = frozenset(expected_ais)
    unknown = sorted(
        repr(ai) for ai in ais if not (isinstance(ai, str) and ai.isdigit() and _is_ai(ai))
    )
    if unknown:
        raise ValueError(f"not GS1 Application Identifiers: {', '.join(unknown)}")
    return ais


def parse_gs1(payload: str, *, expected_ais: frozenset[str] = frozenset()) -> Gs1Data:
    """Read GS1 element strings joined by GS; raise :class:`InvalidGs1Error` for anything doubtful.

    The payload is split at GS first, so inside each segment only the last element may be
    of variable length; an earlier one means the separator after it was lost. With
    ``expected_ais``, a variable-length value that hides one of them (missing from the
    scan) is refused too; see the module docstring for what is and is not detectable.
    """
    elements: dict[str, str] = {}
    parsed: list[GS1ElementString] = []
    for segment in payload.split(GS):
        if not segment:
            continue
        strings = _parse_segment(segment)
        for element in strings[:-1]:
            if element.ai.separator_required:
                raise MissingSeparatorError(
                    f"variable-length {element.ai} is followed by another element without "
                    f"an FNC1 separator in {payload!r}"
                )
        last = strings[-1]
        if last.ai.separator_required:
            hidden = _hidden_element(last.value)
            if hidden is not None:
                raise MissingSeparatorError(
                    f"{last.ai} value {last.value!r} ends in {hidden!r}, which reads as a "
                    f"separate element: the FNC1 separator before it is probably missing"
                )
        for element in strings:
            _check_inner_key(element)
            ai = element.ai.ai
            if elements.get(ai, element.value) != element.value:
                raise InvalidGs1Error(
                    f"{element.ai} appears twice with different values in {payload!r}"
                )
            elements[ai] = element.value
            parsed.append(element)
    if not parsed:
        raise InvalidGs1Error("no GS1 element strings in an empty payload")
    _check_no_hidden_expected(parsed, elements, expected_ais)
    return _to_gs1_data(parsed, elements)


def _check_no_hidden_expected(
    parsed: list[GS1ElementString], elements: dict[str, str], expected_ais: frozenset[str]
) -> None:
    missing = expected_ais - elements.keys()
    if not missing:
        return
    for element in parsed:
        if not element.ai.separator_required:
            continue
        value = element.value
        for start in range(len(value) - 1):
            tail = value[start:]
            ai = next((ai for ai in missing if tail.startswith(ai)), None)
            if ai is None:
                continue
            try:
                hidden = GS1Message.parse(tail, config=_CONFIG).element_strings[0]
            except (BiipException, ValueError, IndexError):
                continue
            if hidden.ai.ai == ai and not (hidden.gtin_error or hidden.sscc_error):
                raise MissingSeparatorError(
                    f"{element.ai} value {value!r} holds {tail!r}, which reads as the "
                    f"expected ({ai}) missing from the scan: the FNC1 separator before it "
                    f"was probably dropped"
                )


def _parse_segment(segment: str) -> list[GS1ElementString]:
    try:
        message = GS1Message.parse(segment, config=_CONFIG)
    except (BiipException, ValueError) as exc:
        raise InvalidGs1Error(str(exc)) from exc
    strings = list(message.element_strings)
    if not strings:
        raise InvalidGs1Error(f"no GS1 element strings in {segment!r}")
    return strings


def _check_inner_key(element: GS1ElementString) -> None:
    # biip records a failed GTIN/SSCC/GLN check on the element instead of raising, since a
    # general-purpose parser wants to show the rest; we must not book a wrong item.
    problem = element.gtin_error or element.sscc_error or element.gln_error
    if problem:
        raise InvalidGs1Error(problem)


def _hidden_element(value: str) -> str | None:
    for start in range(1, len(value) - 1):
        tail = value[start:]
        if not _starts_with_self_checking_ai(tail):
            continue
        try:
            message = GS1Message.parse(tail, config=_CONFIG)
        except (BiipException, ValueError):
            continue
        if not any(e.gtin_error or e.sscc_error or e.gln_error for e in message.element_strings):
            return tail
    return None


def _starts_with_self_checking_ai(text: str) -> bool:
    if text[:2] not in _SELF_CHECKING_AIS and text[:2] not in _MEASURE_AI_GROUPS:
        return False
    try:
        ai = GS1ApplicationIdentifier.extract(text)
    except (BiipException, ValueError):
        return False
    return not ai.separator_required and (
        ai.ai in _SELF_CHECKING_AIS or ai.ai[:2] in _MEASURE_AI_GROUPS
    )


def _to_gs1_data(parsed: list[GS1ElementString], elements: dict[str, str]) -> Gs1Data:
    by_ai = {element.ai.ai: element for element in parsed}
    expiry = by_ai["17"].date if "17" in by_ai else None
    count_text = elements.get("37", elements.get("30"))
    net_weight: Decimal | None = None
    for element in parsed:
        if element.ai.ai.startswith("310") and element.decimal is not None:
            net_weight = element.decimal
            break
    return Gs1Data(
        gtin=elements.get("01"),
        lot=elements.get("10"),
        expiry=expiry,
        serial=elements.get("21"),
        sscc=elements.get("00"),
        count=int(count_text) if count_text is not None else None,
        net_weight_kg=net_weight,
        elements=elements,
        content_gtin=elements.get("02"),
    )


# -- retail symbols: EAN-13, UPC-A, UPC-E, EAN-8 ----------------------------------------------

RETAIL_SYMBOLOGIES = frozenset({"]E0", "]E1", "]E2", "]E3", "]E4"})
"""AIM identifiers of the EAN/UPC family (ISO/IEC 15424): ``]E0`` EAN-13, UPC-A or UPC-E,
``]E1``/``]E2`` a two- or five-digit add-on alone, ``]E3`` a symbol with its add-on,
``]E4`` EAN-8."""

_ADD_ON_LENGTHS = (2, 5)
_RETAIL_NAMES = {8: "EAN-8", 12: "UPC-A", 13: "EAN-13", 14: "GTIN-14"}


def check_gtin(code: str, *, upc_e: bool = True) -> None:
    """Raise :class:`InvalidGs1Error` unless ``code`` is a GTIN with a right check digit.

    ``code`` is 8, 12, 13 or 14 digits: EAN-8, UPC-A (GTIN-12), EAN-13 (GTIN-13) or
    GTIN-14. Eight digits may also be a UPC-E, whose check digit is that of the UPC-A it
    stands for; either reading is accepted unless ``upc_e`` is false (the symbol is known
    to be an EAN-8).
    """
    name = _RETAIL_NAMES.get(len(code)) if code.isdigit() else None
    if name is None:
        raise InvalidGs1Error(f"{code!r} is not a GTIN (8, 12, 13 or 14 digits)")
    try:
        Gtin.parse(code)
    except (BiipException, ValueError):
        if upc_e and len(code) == 8 and _is_upc_e(code):
            return
        right = gs1_standard_check_digit(code[:-1])
        nor = " (nor is it a UPC-E)" if upc_e and len(code) == 8 else ""
        raise InvalidGs1Error(
            f"wrong check digit in {name} {code}: {code[-1]} where {right} belongs{nor}; "
            "a misread or a damaged label, so the scan is refused"
        ) from None


def check_retail_symbol(symbology: str, payload: str) -> None:
    """Raise :class:`InvalidGs1Error` unless ``payload`` is what ``symbology`` carries.

    ``]E0`` is 13 digits (EAN-13, or UPC-A with a leading zero), or 12 (UPC-A) or 8 (UPC-E)
    from scanners that send them unpadded; ``]E4`` is an EAN-8; ``]E3`` is such a symbol
    followed by a two- or five-digit add-on, which has no check digit of its own on the
    wire. Every check digit is verified: a scanner usually does, but not every one, and a
    misread number would be booked under somebody else's goods.
    """
    if symbology not in RETAIL_SYMBOLOGIES:
        raise ValueError(f"{symbology!r} is not an EAN/UPC symbology identifier")
    if not payload.isdigit():
        raise InvalidGs1Error(f"{symbology} carries digits only, got {payload!r}")
    if symbology in ("]E1", "]E2"):
        if len(payload) != _ADD_ON_LENGTHS[int(symbology[2]) - 1]:
            raise InvalidGs1Error(f"{symbology} add-on of {len(payload)} digits: {payload}")
        return
    if symbology == "]E4":
        lengths: tuple[int, ...] = (8,)
    elif symbology == "]E0":
        lengths = (13, 12, 8)
    else:
        lengths = tuple(n + a for n in (13, 12) for a in _ADD_ON_LENGTHS)
    if len(payload) not in lengths:
        raise InvalidGs1Error(f"{symbology} with {len(payload)} digits: {payload}")
    main = payload
    if symbology == "]E3":
        main = payload[: 13 if len(payload) - 13 in _ADD_ON_LENGTHS else 12]
    if symbology == "]E0" and len(main) == 8:
        if not _is_upc_e(main):
            raise InvalidGs1Error(
                f"wrong check digit in UPC-E {main}: a misread or a damaged label, "
                "so the scan is refused"
            )
        return
    check_gtin(main, upc_e=False)


def _is_upc_e(code: str) -> bool:
    try:
        Upc.parse(code)
    except (BiipException, ValueError):
        return False
    return True


# -- GS1 Digital Link ------------------------------------------------------------------------

DIGITAL_LINK_PRIMARY_KEYS = frozenset(
    {"00", "01", "253", "255", "401", "402", "414", "415", "417"}
    | {"8003", "8004", "8006", "8010", "8013", "8017", "8018"}
)
"""The AIs a Digital Link URI path may start its identification with (GS1 Digital Link URI
syntax: SSCC, GTIN, GDTI, GCN, GINC, GSIN, GLN, payTo, party GLN, GRAI, GIAI, ITIP, CPID,
GMN, GSRN-P, GSRN). Only a URL with one of these as a path segment is taken for one."""

_HTTP_SCHEMES = ("http", "https")


def looks_like_digital_link(payload: str) -> bool:
    """Guess a GS1 Digital Link URI: an http(s) URL with a primary key AI in its path.

    Any other URL (a menu, a web shop) is an ordinary scan, not a broken GS1 label; a URL
    that has, say, ``/01/`` in its path claims to be a Digital Link and is parsed strictly.
    """
    scheme, _, rest = payload.partition("://")
    if scheme.lower() not in _HTTP_SCHEMES or not rest:
        return False
    path = rest.partition("?")[0].partition("#")[0]
    segments = path.split("/")[1:]  # the first piece is the host
    return any(segment in DIGITAL_LINK_PRIMARY_KEYS for segment in segments[:-1])


def parse_digital_link(uri: str) -> Gs1Data:
    """Read a GS1 Digital Link URI into the same typed fields as its element string.

    ``biip`` (5.x) parses Digital Link URIs itself (``GS1DigitalLinkURI``), with the path
    grammar (primary key, then its qualifiers in order), percent-decoding, GTIN-8/12/13
    padded to 14 digits, and each AI's own syntax; this function adds what a receiving dock
    needs on top of it:

    - A wrong check digit in a GTIN, SSCC or GLN is an error, not a note on the element.
    - What biip lets pass quietly is refused: an empty query value (``17=``, which biip
      drops), the same AI twice with different values (biip keeps the last), an all-digit
      query key that is no AI (biip ignores unknown keys, so a mistyped AI would vanish), a
      URL without a host. Non-AI query parameters (``linkType``) are ignored, as the
      standard says. The old convenience names (``/gtin/``, ``/lot/``) are refused as
      unknown AIs rather than guessed at.
    - Data attributes written in the path after the key and its qualifiers, such as
      ``/01/<gtin>/10/ABC/17/261231``, are accepted, read as if they were in the query:
      the standard puts them there, but labels in the field do this, and every AI/value
      pair is still delimited and checked on its own, so where it stands cannot change what
      it means.

    Every element biip returns is compared with the AI/value pairs read straight from the
    URI, so a value biip had to cut short, pad or drop can never become a field.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise InvalidGs1Error(f"not a URI: {exc}: {uri!r}") from None
    if parts.scheme.lower() not in _HTTP_SCHEMES:
        raise InvalidGs1Error(f"a Digital Link URI is http(s), got {parts.scheme!r}")
    if not parts.hostname:
        raise InvalidGs1Error(f"Digital Link URI without a host: {uri!r}")
    path_pairs = _path_pairs(parts.path, uri)
    query_pairs = _query_pairs(parts.query)
    strings = _biip_digital_link(parts.scheme, parts.netloc, parts.path, parts.query, path_pairs)
    expected = _expected_elements(path_pairs + query_pairs, uri)
    found: dict[str, str] = {}
    for element in strings:
        _check_inner_key(element)
        found[element.ai.ai] = element.value
    if found != expected:
        raise InvalidGs1Error(
            f"Digital Link URI {uri!r} does not read back as what it says: "
            f"{sorted(expected.items())} in the URI, {sorted(found.items())} parsed"
        )
    return _to_gs1_data(strings, found)


def _path_pairs(path: str, uri: str) -> list[tuple[str, str]]:
    """``(key, decoded value)`` from the primary key on; what comes before is a prefix."""
    segments = path.split("/")
    start = next((i for i, s in enumerate(segments) if s in DIGITAL_LINK_PRIMARY_KEYS), None)
    if start is None:
        raise InvalidGs1Error(f"no GS1 primary key (such as /01/ or /00/) in the path of {uri!r}")
    keyed = segments[start:]
    if len(keyed) % 2:
        raise InvalidGs1Error(f"a path AI without a value in {uri!r}")
    return [(keyed[i], unquote(keyed[i + 1])) for i in range(0, len(keyed), 2)]


def _query_pairs(query: str) -> list[tuple[str, str]]:
    """The AI pairs of the query; keys that are not all digits are not AIs and are skipped."""
    pairs = parse_qsl(query, keep_blank_values=True)
    return [(key, value) for key, value in pairs if key.isdigit()]


def _expected_elements(pairs: list[tuple[str, str]], uri: str) -> dict[str, str]:
    expected: dict[str, str] = {}
    for key, raw_value in pairs:
        if not _is_ai(key):
            raise InvalidGs1Error(f"({key}) is not a GS1 Application Identifier in {uri!r}")
        if not raw_value:
            raise InvalidGs1Error(f"AI ({key}) has an empty value in {uri!r}")
        value = raw_value.zfill(14) if key == "01" and len(raw_value) in (8, 12, 13) else raw_value
        if expected.get(key, value) != value:
            raise InvalidGs1Error(f"AI ({key}) appears twice with different values in {uri!r}")
        expected[key] = value
    return expected


def _is_ai(key: str) -> bool:
    try:
        return GS1ApplicationIdentifier.extract(key).ai == key
    except (BiipException, ValueError):
        return False


def _biip_digital_link(
    scheme: str, netloc: str, path: str, query: str, path_pairs: list[tuple[str, str]]
) -> list[GS1ElementString]:
    """biip's reading of the URI; failing that, of it with trailing path attributes moved
    to the query (see :func:`parse_digital_link`), the fewest moved that biip accepts."""
    segments = path.split("/")
    keyed = 2 * len(path_pairs)
    prefix, raw = segments[: len(segments) - keyed], segments[len(segments) - keyed :]
    first_error: str | None = None
    for moved in range(len(path_pairs)):  # the primary key itself always stays
        kept = prefix + raw[: keyed - 2 * moved]
        extra = urlencode(path_pairs[len(path_pairs) - moved :], quote_via=quote)
        candidate = urlunsplit(
            (scheme, netloc, "/".join(kept), "&".join(q for q in (query, extra) if q), "")
        )
        try:
            return list(GS1DigitalLinkURI.parse(candidate, config=_CONFIG).element_strings)
        except (BiipException, ValueError) as exc:
            first_error = first_error or str(exc)
    raise InvalidGs1Error(f"not a valid GS1 Digital Link URI: {first_error}")
