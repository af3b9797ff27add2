"""The ZPL builder, read back by the printer twin's own parser (written from the spec)."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import InvalidGs1Error
from device_drivers.printers import (
    Code128,
    DataMatrix,
    Gs1Code128,
    Gs1DataMatrix,
    Label,
    LabelDataError,
    PrintJob,
    QrCode,
    Text,
    build_zpl,
    gs1_check_digit,
    receiving_carton_label,
    sscc,
    sscc_check_digit,
)
from device_drivers.printers.zpl import (
    gs1_128_field_data,
    gs1_datamatrix_field_data,
    stamp_job_format,
)
from device_drivers.scanners.gs1 import parse_gs1
from simulators.printer import ReceivedLabel, parse_format

GS = "\x1d"
GTIN = "09506000134352"
GS1_82 = "!\"%&'()*+,-./0123456789:;<=?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
"""GS1's 82-character set for alphanumeric AIs, less '>' which we refuse in Code 128."""


def read_back(label: Label, job_id: str | None = None) -> ReceivedLabel:
    received = parse_format(build_zpl(label, job_id=job_id))
    assert received.problems == ()
    return received


def field_data_segments(zpl: bytes) -> list[bytes]:
    return [chunk.split(b"^FS")[0] for chunk in zpl.split(b"^FD")[1:]]


# -- text -------------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.text(st.characters(codec="utf-8"), max_size=60))
def test_any_text_round_trips_through_the_twin(text: str) -> None:
    zpl = build_zpl(Label((Text(10, 20, text),)))

    received = parse_format(zpl)

    assert received.problems == ()
    assert received.texts == [text]
    assert b"~" not in zpl
    [data] = field_data_segments(zpl)
    assert b"^" not in data
    assert b"\r" not in data
    assert b"\n" not in data


def test_prefixes_and_the_hex_indicator_are_escaped() -> None:
    zpl = build_zpl(Label((Text(0, 0, "a^b~c_d"),)))

    assert b"^FH_^FDa_5Eb_7Ec_5Fd^FS" in zpl


def test_chinese_text_goes_as_utf8_with_ci28_and_a_named_font() -> None:
    zpl = build_zpl(Label((Text(0, 0, "纯牛奶 250ml", font_file="E:SIMSUN.TTF"),)))

    assert b"^CI28" in zpl
    assert "^A@N,30,30,E:SIMSUN.TTF^FH_^FD纯牛奶 250ml^FS".encode() in zpl
    assert parse_format(zpl).texts == ["纯牛奶 250ml"]


def test_job_id_is_a_comment_at_the_top() -> None:
    zpl = build_zpl(Label((Text(0, 0, "x"),), quantity=3), job_id="rcv-7:1")

    assert zpl.startswith(b"^XA\n^FXjxc-job:rcv-7:1^FS\n")
    assert zpl.endswith(b"^XZ\n")
    received = read_back(Label((Text(0, 0, "x"),), quantity=3), job_id="rcv-7:1")
    assert (received.job_id, received.quantity) == ("rcv-7:1", 3)


# -- Code 128 and GS1 -------------------------------------------------------------------


@given(
    st.text(
        st.sampled_from([chr(c) for c in range(0x20, 0x7F) if chr(c) not in "^>~"]),
        min_size=1,
        max_size=40,
    )
)
def test_code128_round_trips(data: str) -> None:
    [symbol] = read_back(Label((Code128(0, 0, data),))).symbols

    assert (symbol.kind, symbol.content, symbol.gs1) == ("code128", data, False)


@pytest.mark.parametrize("data", ["A^B", "A>B", "A~B", "é", "", "tab\t"])
def test_code128_refuses_what_it_cannot_encode_safely(data: str) -> None:
    with pytest.raises(LabelDataError):
        build_zpl(Label((Code128(0, 0, data),)))


def test_gs1_128_has_the_shape_of_zebras_documented_example() -> None:
    # Zebra: >;>8011234567890123421123456>810>6ABC123 (GTIN, serial, FNC1, lot).
    elements = [("01", GTIN), ("21", "123456"), ("10", "ABC123")]

    assert gs1_128_field_data(elements) == ">;>8010950600013435221123456>810>6ABC123"


def test_gs1_128_goes_back_to_subset_c_for_long_digit_runs() -> None:
    elements = [("01", GTIN), ("10", "LOT42"), ("17", "270331"), ("37", "12")]

    assert gs1_128_field_data(elements) == ">;>8010950600013435210>6LOT42>8>5172703313712"


def gtins() -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=13, max_size=13).map(lambda d: d + gs1_check_digit(d))


@settings(max_examples=150)
@given(
    gtin=gtins(),
    lot=st.text(st.sampled_from(GS1_82), min_size=1, max_size=20),
    expiry=st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)),
    count=st.integers(1, 99_999_999),
)
def test_gs1_symbols_scan_back_to_their_elements(
    gtin: str, lot: str, expiry: datetime.date, count: int
) -> None:
    elements = (("01", gtin), ("10", lot), ("17", expiry.strftime("%y%m%d")), ("37", str(count)))
    joined = f"01{gtin}10{lot}{GS}17{expiry:%y%m%d}37{count}"
    try:
        zpl = build_zpl(Label((Gs1Code128(0, 0, elements), Gs1DataMatrix(0, 300, elements))))
    except LabelDataError:
        # Refused only when our own scanners would refuse the same element string.
        with pytest.raises(InvalidGs1Error):
            parse_gs1(joined)
        return

    received = parse_format(zpl)

    assert received.problems == ()
    code128, datamatrix = received.symbols
    for symbol in (code128, datamatrix):
        assert symbol.gs1
        assert symbol.content == joined
        assert parse_gs1(symbol.content).elements == dict(elements)
    assert received.texts == [f"(01){gtin}(10){lot}(17){expiry:%y%m%d}(37){count}"]


def test_gs1_datamatrix_uses_underscore_escapes_and_doubles_underscores() -> None:
    elements = [("01", GTIN), ("10", "A_B"), ("17", "270331")]

    assert gs1_datamatrix_field_data(elements) == f"_101{GTIN}10A__B_117270331"
    zpl = build_zpl(Label((Gs1DataMatrix(0, 0, tuple(elements)),)))
    assert b"^BXN,6,200,,,,_^FH\\^FD_1" in zpl


@pytest.mark.parametrize(
    "elements",
    [
        [("01", "09506000134353")],  # wrong check digit
        [("17", "271340")],  # month 13
        [("99x", "1")],  # not an AI
        [("10", "A>B")],  # refused character
        [("10", "x" * 21)],  # too long for AI 10
        [],
    ],
)
def test_gs1_data_that_would_not_scan_is_refused(elements: list[tuple[str, str]]) -> None:
    with pytest.raises(LabelDataError):
        gs1_128_field_data(elements)


# -- 2D ---------------------------------------------------------------------------------


def test_plain_datamatrix_round_trips_escapes() -> None:
    data = "A_B^C~D\\E"
    [symbol] = read_back(Label((DataMatrix(0, 0, data),))).symbols

    assert (symbol.kind, symbol.content) == ("datamatrix", data)


def test_qr_code_carries_error_correction_and_automatic_input() -> None:
    zpl = build_zpl(Label((QrCode(5, 5, "https://jxc.example/r/42", error_correction="Q"),)))

    assert b"^BQN,2,5^FH_^FDQA,https://jxc.example/r/42^FS" in zpl
    [symbol] = parse_format(zpl).symbols
    assert (symbol.kind, symbol.content) == ("qr", "https://jxc.example/r/42")


def test_qr_code_refuses_bytes_automatic_input_cannot_carry() -> None:
    with pytest.raises(LabelDataError):
        build_zpl(Label((QrCode(0, 0, "纯牛奶"),)))


# -- SSCC -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "check"),
    [
        ("10614141234567890", "8"),  # GS1's SSCC example (00)106141412345678908
        ("0950600013435", "2"),  # GTIN 09506000134352
        ("400638133393", "1"),  # EAN-13 4006381333931
        ("0000000000000000", "0"),
    ],
)
def test_gs1_check_digits_of_known_codes(digits: str, check: str) -> None:
    assert gs1_check_digit(digits) == check


def test_sscc_is_built_from_its_parts_and_scans() -> None:
    code = sscc(1, "0614141", "234567890")

    assert code == "106141412345678908"
    assert sscc_check_digit(code[:17]) == "8"
    assert parse_gs1("00" + code).sscc == code
    padded = sscc(0, "0614141", "7")
    assert padded[:17] == "00614141000000007"
    assert padded[17] == gs1_check_digit(padded[:17])


@pytest.mark.parametrize(
    ("extension", "prefix", "serial"),
    [(10, "0614141", "1"), (1, "12345", "1"), (1, "0614141", "1234567890"), (1, "06141a1", "1")],
)
def test_sscc_refuses_parts_that_do_not_fit(extension: int, prefix: str, serial: str) -> None:
    with pytest.raises(LabelDataError):
        sscc(extension, prefix, serial)


# -- the receiving template -------------------------------------------------------------


def test_receiving_carton_label_reads_back_as_the_station_needs_it() -> None:
    code = sscc(1, "0614141", "234567890")
    label = receiving_carton_label(
        item_code="MILK-250",
        description="纯牛奶 250ml",
        gtin=GTIN,
        lot="L2403A",
        expiry=datetime.date(2027, 3, 31),
        quantity=24,
        uom="box",
        sscc_code=code,
        font_file="E:SIMSUN.TTF",
    )

    received = read_back(label, job_id="rcv-1")

    assert received.job_id == "rcv-1"
    assert received.texts[:5] == [
        "MILK-250",
        "纯牛奶 250ml",
        "LOT L2403A",
        "EXP 2027-03-31",
        "QTY 24 box",
    ]
    gs1_128, datamatrix, pallet = received.symbols
    data = parse_gs1(gs1_128.content or "")
    assert (data.gtin, data.lot, data.expiry, data.count) == (
        GTIN,
        "L2403A",
        datetime.date(2027, 3, 31),
        24,
    )
    assert datamatrix.content == gs1_128.content
    assert parse_gs1(pallet.content or "").sscc == code


# -- jobs -------------------------------------------------------------------------------


def test_stamping_adds_the_job_comment_and_reads_the_quantity() -> None:
    body, quantity = stamp_job_format(b"\r\n^XA^PQ4^FO1,1^FDx^FS^XZ\r\n", "job-9")

    assert body == b"^XA^FXjxc-job:job-9^FS^PQ4^FO1,1^FDx^FS^XZ\n"
    assert quantity == 4
    assert parse_format(body).job_id == "job-9"


def test_a_format_already_stamped_for_the_job_is_sent_as_is() -> None:
    zpl = build_zpl(Label((Text(0, 0, "x"),)), job_id="job-1")

    assert stamp_job_format(zpl, "job-1") == (zpl.strip() + b"\n", 1)
    with pytest.raises(LabelDataError):
        stamp_job_format(zpl, "job-2")


@pytest.mark.parametrize(
    "zpl",
    [
        b"^FDx^FS",
        b"^XA^FDx^FS^XZ^XA^FDy^FS^XZ",
        b"^XA^FDx^FS~JA^XZ",
        b"^XA^PQ0^XZ",
    ],
)
def test_a_job_must_be_one_plain_format(zpl: bytes) -> None:
    with pytest.raises(LabelDataError):
        stamp_job_format(zpl, "job-1")


@pytest.mark.parametrize("job_id", ["", "a b", "x^y", "x~y", "j" * 65, "作业"])
def test_job_ids_travel_inside_zpl_so_are_restricted(job_id: str) -> None:
    with pytest.raises(LabelDataError):
        PrintJob(job_id, b"^XA^XZ")
    with pytest.raises(LabelDataError):
        build_zpl(Label(()), job_id=job_id)


@pytest.mark.parametrize(
    "label",
    [
        Label((Text(-1, 0, "x"),)),
        Label((Text(0, 0, "x", height=40_000),)),
        Label((Code128(0, 0, "x", module_width=11),)),
        Label((Text(0, 0, "\ud800"),)),
        Label((Text(0, 0, "x" * 4000),)),
        Label((Text(0, 0, "x", font_file="SIMSUN.TTF^"),)),
        Label((), quantity=0),
    ],
)
def test_impossible_labels_are_refused_while_building(label: Label) -> None:
    with pytest.raises(LabelDataError):
        build_zpl(label)
