"""GS1 element strings from a scanner payload, refused when they do not hold up.

``biip`` knows the Application Identifiers, check digits and date rules. This module adds
what a receiving dock needs on top: a GTIN or SSCC with a wrong check digit is an error
rather than a note on the element, and a variable-length field that swallowed the fields
after it (a scanner set up to drop FNC1) is detected and refused instead of being booked
with a lot number like ``LOT4217250600``.
"""

from __future__ import annotations

import re
from decimal import Decimal

from biip import BiipException, ParseConfig
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message

from device_drivers.errors import InvalidGs1Error
from device_drivers.scanners.base import Gs1Data

__all__ = ["GS", "looks_like_gs1", "parse_gs1"]

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


def parse_gs1(payload: str) -> Gs1Data:
    """Read GS1 element strings joined by GS; raise :class:`InvalidGs1Error` for anything doubtful.

    The payload is split at GS first, so inside each segment only the last element may be
    of variable length; an earlier one means the separator after it was lost.
    """
    elements: dict[str, str] = {}
    parsed: list[GS1ElementString] = []
    for segment in payload.split(GS):
        if not segment:
            continue
        strings = _parse_segment(segment)
        for element in strings[:-1]:
            if element.ai.separator_required:
                raise InvalidGs1Error(
                    f"variable-length {element.ai} is followed by another element without "
                    f"an FNC1 separator in {payload!r}"
                )
        last = strings[-1]
        if last.ai.separator_required:
            hidden = _hidden_element(last.value)
            if hidden is not None:
                raise InvalidGs1Error(
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
    return _to_gs1_data(parsed, elements)


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
