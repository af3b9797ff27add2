"""What kind of code a barcode is, and whether its GS1 check digit is right.

A GTIN (EAN-8, UPC-A, EAN-13, GTIN-14) ends in a check digit; a code typed with one digit
wrong almost always fails it, and a wrong code in the item master means every scan of the
real product is refused at the dock. So a code of 8, 12, 13 or 14 digits is taken as a
GTIN and its check digit verified, unless the caller declares it ``internal`` (a store's
own numbering that happens to be all digits). Anything else is an internal code.

Written here rather than imported from ``device_drivers`` (central may import only
``jxc``); the arithmetic is the GS1 General Specifications' mod-10 with weights 3 and 1
from the right.
"""

from __future__ import annotations

from typing import Literal, get_args

from central_api.errors import InvalidError

BarcodeKind = Literal["ean8", "upca", "ean13", "gtin14", "internal"]
BARCODE_KINDS: tuple[str, ...] = get_args(BarcodeKind)

GTIN_LENGTHS: dict[str, int] = {"ean8": 8, "upca": 12, "ean13": 13, "gtin14": 14}
_KIND_OF_LENGTH = {length: kind for kind, length in GTIN_LENGTHS.items()}


def gs1_check_digit(body: str) -> int:
    """The check digit that completes ``body`` (every digit of the code but the last)."""
    total = sum(int(digit) * (3 if index % 2 == 0 else 1) for index, digit in enumerate(body[::-1]))
    return (10 - total % 10) % 10


def _all_digits(code: str) -> bool:
    return code.isascii() and code.isdigit()


def barcode_kind(code: str, declared: str | None = None) -> str:
    """The kind of ``code``, checked; raises InvalidError naming the code and the fix.

    ``declared`` (one of :data:`BARCODE_KINDS`) is what the caller says it is; None lets
    the digits decide.
    """
    if declared is not None and declared not in BARCODE_KINDS:
        raise InvalidError(
            f"barcode {code!r}: kind {declared!r} is not one of {', '.join(BARCODE_KINDS)}"
        )
    if declared == "internal":
        return "internal"
    kind = declared
    if kind is None:
        if not _all_digits(code) or len(code) not in _KIND_OF_LENGTH:
            return "internal"
        kind = _KIND_OF_LENGTH[len(code)]
    length = GTIN_LENGTHS[kind]
    if not _all_digits(code) or len(code) != length:
        raise InvalidError(f"barcode {code!r}: a {kind} code is {length} digits")
    expected = gs1_check_digit(code[:-1])
    if int(code[-1]) != expected:
        raise InvalidError(
            f"barcode {code!r}: the {kind} check digit should be {expected}, not {code[-1]} "
            "(a misread or mistyped digit?); declare kind 'internal' if it is your own code"
        )
    return kind


def gtin_spellings(code: str) -> list[str]:
    """``code`` and the other spellings a scanner may send for the same GTIN (a GTIN-13
    in a GTIN-14 field has a leading 0), so a search finds the item either way."""
    spellings = [code]
    if _all_digits(code):
        if len(code) == 14 and code.startswith("0"):
            spellings.append(code[1:])
        elif len(code) in (12, 13):
            spellings.append(code.zfill(14))
            if len(code) == 12:
                spellings.append(code.zfill(13))
        if len(code) == 14 and code.startswith("00"):
            spellings.append(code[2:])
    return spellings
