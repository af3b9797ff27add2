"""GS1 element strings: typed fields out, doubtful labels refused."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import InvalidGs1Error, RejectedInputError
from device_drivers.scanners.base import Gs1Mode
from device_drivers.scanners.framing import parse_line
from device_drivers.scanners.gs1 import looks_like_gs1, parse_gs1

GS = "\x1d"
NOW = datetime.datetime(2026, 1, 5, 8, 30, tzinfo=datetime.UTC)


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10, written out here so the tests do not trust the code under test."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


GTIN_A = "0950600013435" + gs1_check_digit("0950600013435")
GTIN_B = "0950110153000" + gs1_check_digit("0950110153000")
SSCC = "00950600000000001" + gs1_check_digit("00950600000000001")


def test_reference_gtins_have_the_published_check_digits() -> None:
    assert GTIN_A == "09506000134352"
    assert GTIN_B == "09501101530003"
    assert SSCC == "009506000000000019"


def test_gtin_lot_and_expiry_become_typed_fields() -> None:
    data = parse_gs1(f"01{GTIN_A}10LOT42{GS}17261231")
    assert data.gtin == GTIN_A
    assert data.lot == "LOT42"
    assert data.expiry == datetime.date(2026, 12, 31)
    assert data.elements == {"01": GTIN_A, "10": "LOT42", "17": "261231"}


def test_expiry_day_00_means_last_day_of_month() -> None:
    assert parse_gs1(f"01{GTIN_A}17280200").expiry == datetime.date(2028, 2, 29)
    assert parse_gs1(f"01{GTIN_A}17250600").expiry == datetime.date(2025, 6, 30)


def test_serial_number_last_needs_no_separator() -> None:
    data = parse_gs1(f"01{GTIN_B}21SN-0001")
    assert data.gtin == GTIN_B
    assert data.serial == "SN-0001"


def test_sscc_of_a_pallet() -> None:
    data = parse_gs1(f"00{SSCC}")
    assert data.sscc == SSCC
    assert data.gtin is None


def test_count_of_trade_items_in_a_logistic_unit() -> None:
    data = parse_gs1(f"00{SSCC}02{GTIN_A}3724{GS}10LOT7")
    assert data.count == 24
    assert data.lot == "LOT7"
    assert data.content_gtin == GTIN_A, "(02) names what is inside, (37) how many"
    assert data.gtin is None


def test_variable_count_of_items() -> None:
    assert parse_gs1(f"01{GTIN_A}3012").count == 12


def test_net_weight_3103_is_a_decimal_in_kg() -> None:
    data = parse_gs1(f"01{GTIN_A}3103001250")
    assert data.net_weight_kg == Decimal("1.250")
    assert isinstance(data.net_weight_kg, Decimal)


def test_bad_gtin_check_digit_is_refused() -> None:
    with pytest.raises(InvalidGs1Error, match="check digit"):
        parse_gs1("0109506000134353")


def test_bad_sscc_check_digit_is_refused() -> None:
    with pytest.raises(InvalidGs1Error, match="check digit"):
        parse_gs1("00009506000000000018")


def test_variable_field_not_last_without_separator_is_refused() -> None:
    # The scanner dropped the FNC1 after the lot: biip alone would read lot "LOT4217250600".
    with pytest.raises(InvalidGs1Error, match="FNC1"):
        parse_gs1(f"01{GTIN_A}10LOT4217250600")


def test_full_length_variable_field_run_into_the_next_is_refused() -> None:
    with pytest.raises(InvalidGs1Error, match="without an FNC1"):
        parse_gs1("10ABCDEFGHIJKLMNOPQRST3103001250")


def test_lot_that_merely_ends_in_digits_is_accepted() -> None:
    assert parse_gs1(f"01{GTIN_A}10LOT2012").lot == "LOT2012"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ("2312", "unknown AI"),
        (f"01{GTIN_A}17251301", "month 13"),
        (f"01{GTIN_A}10A{GS}10B", "same AI, two values"),
        ("01095060001343", "GTIN too short"),
        ("", "nothing"),
        (GS, "only a separator"),
    ],
)
def test_doubtful_element_strings_are_refused(payload: str, why: str) -> None:
    with pytest.raises(InvalidGs1Error):
        parse_gs1(payload)


def test_pipe_separator_configured_for_the_scanner() -> None:
    raw = f"]C101{GTIN_A}10LOT42|17250600".encode()
    scan = parse_line(raw, device_id="d", received_at=NOW, fnc1_separator="|")
    assert scan.gs1 is not None
    assert scan.gs1.lot == "LOT42"
    assert scan.gs1.expiry == datetime.date(2025, 6, 30)
    assert scan.data == f"01{GTIN_A}10LOT42{GS}17250600"


def test_gs1_128_line_keeps_raw_bytes_and_strips_the_aim_identifier() -> None:
    raw = f"]C101{GTIN_A}10LOT42{GS}17250600".encode()
    scan = parse_line(raw, device_id="dock-1", received_at=NOW)
    assert scan.raw == raw
    assert scan.symbology == "]C1"
    assert scan.data == f"01{GTIN_A}10LOT42{GS}17250600"
    assert scan.gs1 is not None
    assert scan.gs1.gtin == GTIN_A
    assert scan.received_at == NOW
    assert scan.device_id == "dock-1"


def test_leading_fnc1_sent_as_gs_is_tolerated() -> None:
    scan = parse_line(f"]d2{GS}01{GTIN_A}".encode(), device_id="d", received_at=NOW)
    assert scan.gs1 is not None
    assert scan.data == f"01{GTIN_A}"


def test_ean13_is_not_read_as_gs1() -> None:
    scan = parse_line(b"]E09506000134352", device_id="d", received_at=NOW)
    assert scan.symbology == "]E0"
    assert scan.data == "9506000134352"
    assert scan.gs1 is None


@pytest.mark.parametrize(
    ("raw", "mode", "gtin"),
    [
        (f"01{GTIN_A}10LOT1".encode(), "auto", GTIN_A),
        (b"9506000134352", "auto", None),
        (b"HELLO-123", "auto", None),
        (f"]C101{GTIN_A}".encode(), "never", None),
        (f"01{GTIN_A}".encode(), "never", None),
        (f"01{GTIN_B}".encode(), "always", GTIN_B),
        (f"]C001{GTIN_B}".encode(), "always", GTIN_B),
    ],
)
def test_gs1_mode_decides_when_to_parse(raw: bytes, mode: Gs1Mode, gtin: str | None) -> None:
    scan = parse_line(raw, device_id="d", received_at=NOW, gs1=mode)
    assert (scan.gs1.gtin if scan.gs1 else None) == gtin


def test_always_mode_refuses_a_plain_code() -> None:
    with pytest.raises(InvalidGs1Error):
        parse_line(b"HELLO-123", device_id="d", received_at=NOW, gs1="always")


def test_auto_mode_refuses_gs1_shaped_data_with_a_bad_check_digit() -> None:
    with pytest.raises(InvalidGs1Error):
        parse_line(b"0109506000134353", device_id="d", received_at=NOW)


def test_gs1_symbology_without_data_is_refused() -> None:
    with pytest.raises(InvalidGs1Error):
        parse_line(b"]C1", device_id="d", received_at=NOW)


def test_non_gs1_symbology_without_data_is_refused_as_empty() -> None:
    with pytest.raises(RejectedInputError) as caught:
        parse_line(b"]E0", device_id="d", received_at=NOW)
    assert caught.value.reason == "empty"


def test_not_printable_bytes_are_refused_even_without_the_framer() -> None:
    with pytest.raises(RejectedInputError) as caught:
        parse_line(b"AB\x00C", device_id="d", received_at=NOW)
    assert caught.value.reason == "not_printable"


def test_looks_like_gs1_ignores_plain_numbers() -> None:
    assert looks_like_gs1(f"01{GTIN_A}")
    assert looks_like_gs1(f"00{SSCC}")
    assert looks_like_gs1(f"10LOT{GS}21X")
    assert not looks_like_gs1("9506000134352")
    assert not looks_like_gs1(f"LOT{GS}X")


_SCANNER_TEXT = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + [GS]), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(
    symbology=st.sampled_from(["", "]C1", "]d2", "]Q3", "]e0", "]E0", "]C0"]),
    text=_SCANNER_TEXT | st.builds(lambda a, b: a + b, st.just(f"01{GTIN_A}"), _SCANNER_TEXT),
    mode=st.sampled_from(["auto", "always", "never"]),
)
def test_any_line_is_a_scan_or_a_rejection_never_a_crash(
    symbology: str, text: str, mode: Gs1Mode
) -> None:
    raw = (symbology + text).encode("ascii")
    reason: str | None = None
    try:
        scan = parse_line(raw, device_id="d", received_at=NOW, gs1=mode)
    except RejectedInputError as exc:
        reason = exc.reason
    if reason is not None:
        assert reason in {"gs1_invalid", "empty", "not_printable"}
        return
    assert scan.raw == raw
    assert scan.data
    if scan.gs1 is not None:
        assert scan.gs1.elements
        if scan.gs1.gtin is not None:
            assert scan.gs1.gtin[-1] == gs1_check_digit(scan.gs1.gtin[:-1])
