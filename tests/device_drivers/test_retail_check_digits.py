"""EAN-13, UPC-A, UPC-E and EAN-8 check digits: a misread retail code is refused, never a scan.

The check digits are computed here from the GS1 rule (and UPC-E expanded by its own rule),
written out independently of the code under test.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import InvalidGs1Error, RejectedInputError
from device_drivers.scanners.framing import parse_line
from device_drivers.scanners.gs1 import check_gtin

NOW = datetime.datetime(2025, 6, 1, 12, 0, tzinfo=datetime.UTC)


def check_digit(body: str) -> str:
    """GS1 mod-10: weights 3, 1, 3, ... from the rightmost digit of the body."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def upc_e_to_upc_a_body(number_system: str, six: str) -> str:
    """The 11-digit UPC-A body a UPC-E stands for (its check digit is that UPC-A's)."""
    d1, d2, d3, d4, d5, d6 = six
    if d6 in "012":
        middle = d1 + d2 + d6 + "0000" + d3 + d4 + d5
    elif d6 == "3":
        middle = d1 + d2 + d3 + "00000" + d4 + d5
    elif d6 == "4":
        middle = d1 + d2 + d3 + d4 + "00000" + d5
    else:
        middle = d1 + d2 + d3 + d4 + d5 + "0000" + d6
    return number_system + middle


def wrong(code: str) -> str:
    """``code`` with its last digit replaced by a wrong one."""
    return code[:-1] + str((int(code[-1]) + 1) % 10)


def scan(line: str, **options: object) -> str:
    return parse_line(line.encode(), device_id="d", received_at=NOW, **options).data  # type: ignore[arg-type]


EAN_13 = "9506000134352"
UPC_A = "036000291452"
EAN_8 = "96385074"
UPC_E = "06543217"  # stands for UPC-A 065100004327; not a valid EAN-8


def test_reference_codes_have_their_published_check_digits() -> None:
    assert EAN_13[-1] == check_digit(EAN_13[:-1])
    assert UPC_A[-1] == check_digit(UPC_A[:-1])
    assert EAN_8[-1] == check_digit(EAN_8[:-1])
    assert UPC_E[-1] == check_digit(upc_e_to_upc_a_body(UPC_E[0], UPC_E[1:7]))
    assert UPC_E[-1] != check_digit(UPC_E[:-1])


@pytest.mark.parametrize(
    "line",
    [
        f"]E0{EAN_13}",
        f"]E00{UPC_A}",  # UPC-A as thirteen digits
        f"]E0{UPC_A}",  # UPC-A as twelve
        f"]E0{UPC_E}",  # UPC-E as eight
        f"]E4{EAN_8}",
        f"]E3{EAN_13}12",  # with a two-digit add-on
        f"]E3{EAN_13}51299",  # with a five-digit add-on
        f"]E3{UPC_A}12",
        "]E112",  # an add-on alone: it has no check digit on the wire
        "]E251299",
    ],
)
def test_good_retail_symbols_are_scans(line: str) -> None:
    assert scan(line) == line[3:]


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (f"]E0{wrong(EAN_13)}", "EAN-13 9506000134353: 3 where 2 belongs"),
        (f"]E00{wrong(UPC_A)}", "EAN-13"),
        (f"]E0{wrong(UPC_A)}", "UPC-A 036000291453: 3 where 2 belongs"),
        (f"]E0{wrong(UPC_E)}", "UPC-E"),
        (f"]E4{wrong(EAN_8)}", "EAN-8 96385075: 5 where 4 belongs"),
        (f"]E3{wrong(EAN_13)}12", "EAN-13"),
        (f"]E3{wrong(UPC_A)}51299", "UPC-A"),
        ("]E0950600013435X", "digits only"),
        ("]E095060001343520", "14 digits"),
        ("]E4123", "3 digits"),
        ("]E1123", "add-on"),
    ],
)
def test_a_wrong_check_digit_or_shape_is_refused_as_gs1_invalid(line: str, said: str) -> None:
    with pytest.raises(InvalidGs1Error) as caught:
        scan(line)
    assert caught.value.reason == "gs1_invalid"
    assert said in caught.value.detail


def test_a_misread_ean_13_says_what_went_wrong() -> None:
    with pytest.raises(InvalidGs1Error) as caught:
        scan(f"]E0{wrong(EAN_13)}")
    assert "wrong check digit" in caught.value.detail
    assert "misread" in caught.value.detail


def test_never_mode_takes_every_line_as_raw_text() -> None:
    assert scan(f"]E0{wrong(EAN_13)}", gs1="never") == wrong(EAN_13)


def test_without_an_identifier_the_driver_cannot_tell_an_ean_from_any_number() -> None:
    """A bare number may be an internal code in Code 128: the station checks it instead,
    where it is about to be taken for a GTIN."""
    assert scan(wrong(EAN_13)) == wrong(EAN_13)


@pytest.mark.parametrize("code", ["", "12345", "95060001343520000", "950600013435X"])
def test_check_gtin_refuses_what_is_not_a_gtin(code: str) -> None:
    with pytest.raises(InvalidGs1Error, match="not a GTIN"):
        check_gtin(code)


# -- property tests --------------------------------------------------------------------------

DIGITS = "0123456789"


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(DIGITS, min_size=12, max_size=12),
    position=st.integers(0, 12),
    shift=st.integers(1, 9),
)
def test_every_single_digit_misread_of_an_ean_13_is_refused(
    body: str, position: int, shift: int
) -> None:
    good = body + check_digit(body)
    assert scan(f"]E0{good}") == good
    misread = good[:position] + str((int(good[position]) + shift) % 10) + good[position + 1 :]
    with pytest.raises(RejectedInputError) as caught:
        scan(f"]E0{misread}")
    assert caught.value.reason == "gs1_invalid"


@settings(max_examples=300, deadline=None)
@given(
    length=st.sampled_from([8, 12, 13, 14]),
    data=st.data(),
)
def test_a_gtin_of_any_length_passes_exactly_with_its_check_digit(
    length: int, data: st.DataObject
) -> None:
    body = data.draw(st.text(DIGITS, min_size=length - 1, max_size=length - 1))
    right = check_digit(body)
    for digit in DIGITS:
        code = body + digit
        upc_e = (
            length == 8
            and code[0] in "01"
            and digit == check_digit(upc_e_to_upc_a_body(code[0], code[1:7]))
        )
        if digit == right or upc_e:
            check_gtin(code)
        else:
            with pytest.raises(InvalidGs1Error, match="wrong check digit"):
                check_gtin(code)


@settings(max_examples=200, deadline=None)
@given(
    number_system=st.sampled_from("01"),
    six=st.text(DIGITS, min_size=6, max_size=6),
    digit=st.sampled_from(DIGITS),
)
def test_a_upc_e_is_checked_by_the_upc_a_it_stands_for(
    number_system: str, six: str, digit: str
) -> None:
    code = number_system + six + digit
    if digit == check_digit(upc_e_to_upc_a_body(number_system, six)):
        assert scan(f"]E0{code}") == code
    else:
        with pytest.raises(InvalidGs1Error):
            scan(f"]E0{code}")


@settings(max_examples=200, deadline=None)
@given(
    body=st.text(DIGITS, min_size=7, max_size=7),
    digit=st.sampled_from(DIGITS),
)
def test_an_ean_8_passes_only_with_its_check_digit(body: str, digit: str) -> None:
    code = body + digit
    if digit == check_digit(body):
        assert scan(f"]E4{code}") == code
    else:
        with pytest.raises(InvalidGs1Error):
            scan(f"]E4{code}")
