"""GS1 check digits, GTIN spellings and unit factors, as properties (no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central_api.errors import InvalidError
from central_api.services.barcodes import (
    GTIN_LENGTHS,
    barcode_kind,
    gs1_check_digit,
    gtin_spellings,
)
from central_api.services.categories import mask_matches
from central_api.services.items import UnitSpec, _resolve_units

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@given(st.sampled_from(sorted(GTIN_LENGTHS)), st.data())
def test_a_gtin_with_its_check_digit_is_taken_and_one_wrong_digit_is_not(
    kind: str, data: st.DataObject
) -> None:
    length = GTIN_LENGTHS[kind]
    body = data.draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    code = body + str(gs1_check_digit(body))

    assert barcode_kind(code) == kind
    position = data.draw(st.integers(0, length - 1))
    other = data.draw(digits.filter(lambda d: d != code[position]))
    typo = code[:position] + other + code[position + 1 :]
    with pytest.raises(InvalidError, match="check digit"):
        barcode_kind(typo)
    assert barcode_kind(typo, "internal") == "internal"


def test_known_codes() -> None:
    assert barcode_kind("5901234123457") == "ean13"
    assert barcode_kind("036000291452") == "upca"
    assert barcode_kind("96385074") == "ean8"
    assert barcode_kind("09506000134376") == "gtin14"
    assert barcode_kind("GS1/01/123") == "internal"
    assert barcode_kind("690123") == "internal"


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_every_spelling_of_a_gtin13_finds_the_others(body: str) -> None:
    code = body + str(gs1_check_digit(body))

    assert "0" + code in gtin_spellings(code)
    assert code in gtin_spellings("0" + code)


@given(
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3),
)
def test_a_unit_of_a_unit_is_the_exact_product(inner: Decimal, outer: Decimal) -> None:
    factors = _resolve_units("片", [UnitSpec("箱", outer, "盒"), UnitSpec("盒", inner)])

    assert factors["盒"] == inner
    assert factors["箱"] == inner * outer


@pytest.mark.parametrize(
    ("mask", "code", "matches"),
    [
        ("TEA-####", "TEA-0042", True),
        ("TEA-####", "TEA-42", False),
        ("@@-*?", "AB-9x", True),
        ("@@-*?", "A1-9x", False),
        ("a.b", "axb", False),
        ("(a+)+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", False),
    ],
)
def test_a_coding_mask_is_literal_but_for_its_four_signs(
    mask: str, code: str, matches: bool
) -> None:
    assert mask_matches(mask, code) is matches
