"""MT-SICS from bytes alone: commands out, replies in, and what is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.scales.mtsics import (
    DiscardedReply,
    ErrorReply,
    MtSicsCodecError,
    ReplyFramer,
    StatusReply,
    TextReply,
    WeightReply,
    encode_command,
    encode_preset_tare,
    format_weight_reply,
    parse_reply,
    reply_id,
)

UNITS = ["mg", "g", "kg", "lb", "oz"]


# -- commands ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["S", "SI", "SIR", "Z", "ZI", "T", "TI", "TA", "TAC", "@", "I0", "I2", "I4"]
)
def test_every_command_is_its_name_and_crlf(command: str) -> None:
    assert encode_command(command) == command.encode() + b"\r\n"  # type: ignore[arg-type]


def test_preset_tare_carries_value_and_unit() -> None:
    assert encode_preset_tare(Decimal("12.50"), "g") == b"TA 12.50 g\r\n"
    assert encode_preset_tare(Decimal("1E+1"), "kg") == b"TA 10 kg\r\n"


@pytest.mark.parametrize(
    ("value", "unit"), [(Decimal(-1), "g"), (Decimal("NaN"), "g"), (Decimal(1), "stone")]
)
def test_preset_tare_refuses_what_no_scale_accepts(value: Decimal, unit: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by cause
        encode_preset_tare(value, unit)


@pytest.mark.parametrize("parameter", ["1 2", "a\r\nZ", "", "ü"])
def test_parameters_that_would_change_the_command_are_refused(parameter: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        encode_command("TA", parameter)


def test_unknown_commands_are_refused() -> None:
    with pytest.raises(ValueError, match="not an MT-SICS command"):
        encode_command("PWR")  # type: ignore[arg-type]


def test_replies_to_si_sir_and_reset_carry_another_identifier() -> None:
    assert [reply_id(c) for c in ("S", "SI", "SIR", "@", "TAC")] == ["S", "S", "S", "I4", "TAC"]


# -- replies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"S S      100.00 g", WeightReply("S", "S", Decimal("100.00"), "g", b"")),
        (b"S D      100.02 g", WeightReply("S", "D", Decimal("100.02"), "g", b"")),
        (b"S S     -12.345 kg", WeightReply("S", "S", Decimal("-12.345"), "kg", b"")),
        (b"S S  12345678901 g", WeightReply("S", "S", Decimal(12345678901), "g", b"")),
        (b"S S 0.5 lb   ", WeightReply("S", "S", Decimal("0.5"), "lb", b"")),
        (b"T S      250.00 g", WeightReply("T", "S", Decimal("250.00"), "g", b"")),
        (b"TI D       12.30 g", WeightReply("TI", "D", Decimal("12.30"), "g", b"")),
        (b"TA A       12.00 g", WeightReply("TA", "A", Decimal("12.00"), "g", b"")),
        (b"S I", StatusReply("S", "I", b"")),
        (b"S +", StatusReply("S", "+", b"")),
        (b"S -", StatusReply("S", "-", b"")),
        (b"Z A", StatusReply("Z", "A", b"")),
        (b"Z I", StatusReply("Z", "I", b"")),
        (b"Z +", StatusReply("Z", "+", b"")),
        (b"Z -", StatusReply("Z", "-", b"")),
        (b"ZI D", StatusReply("ZI", "D", b"")),
        (b"ZI S", StatusReply("ZI", "S", b"")),
        (b"T I", StatusReply("T", "I", b"")),
        (b"TA L", StatusReply("TA", "L", b"")),
        (b"TAC A", StatusReply("TAC", "A", b"")),
        (b"TAC I", StatusReply("TAC", "I", b"")),
        (b"I0 A", StatusReply("I0", "A", b"")),
        (b"I4 I", StatusReply("I4", "I", b"")),
        (b"ES", ErrorReply("ES", b"")),
        (b"ET", ErrorReply("ET", b"")),
        (b"EL", ErrorReply("EL", b"")),
        (b'I4 A "0123456789"', TextReply("I4", "A", ("0123456789",), b"")),
        (b'I2 A "XS205 220.0000 g"', TextReply("I2", "A", ("XS205 220.0000 g",), b"")),
        (b'I0 B 0 "I0"', TextReply("I0", "B", ("0", "I0"), b"")),
        (b'I0 A 1 "TAC"', TextReply("I0", "A", ("1", "TAC"), b"")),
    ],
)
def test_replies_parse_into_typed_values(line: bytes, expected: object) -> None:
    reply = parse_reply(line)
    assert type(reply) is type(expected)
    assert reply.raw == line
    assert {k: v for k, v in vars_of(reply).items() if k != "raw"} == {
        k: v for k, v in vars_of(expected).items() if k != "raw"
    }


def vars_of(reply: object) -> dict[str, object]:
    return {name: getattr(reply, name) for name in reply.__slots__}  # type: ignore[attr-defined]


def test_trailing_zeros_are_kept_because_they_are_the_readability() -> None:
    reply = parse_reply(b"S S      100.00 g")
    assert isinstance(reply, WeightReply)
    assert str(reply.value) == "100.00"


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"S",
        b"S S",  # stable, but no weight
        b"S D",
        b"S A      100.00 g",  # weighing replies have no status A
        b"S S      100.00",  # no unit
        b"S S      100.00 stone",  # a unit we cannot convert
        b"S S      1,5 kg",  # decimal comma
        b"S S      1.5.0 kg",
        b"S S      +1.5 kg",  # MT-SICS puts no plus sign
        b"S S      1.5 kg junk",
        b"S  S      1.5 kg",
        b"s s      1.5 kg",
        b"Z S",  # Z has no status S, only ZI does
        b"TAC B",
        b"I4 A 0123",  # serial number must be quoted
        b'I4 A "a" "b"',
        b'I0 B "I0"',  # level missing
        b"I0 B",
        b"ESX",
        b"S S \x00 100.00 g",
        b"S S    100.00 g\xb5",
        b"\xf0\x00\x8c\x1f\xfe\x7f\x9a\x03\xe6",
    ],
)
def test_anything_off_grammar_is_a_codec_error(line: bytes) -> None:
    with pytest.raises(MtSicsCodecError) as caught:
        parse_reply(line)
    assert caught.value.reason == "garbage"
    assert caught.value.raw == line


@settings(max_examples=300)
@given(
    status=st.sampled_from(["S", "D"]),
    places=st.integers(0, 6),
    units=st.integers(-(10**9), 10**9),
    unit=st.sampled_from(UNITS),
)
def test_weight_round_trip_is_exact(status: str, places: int, units: int, unit: str) -> None:
    value = Decimal(units).scaleb(-places)
    line = format_weight_reply("S", status, value, unit)
    assert line.endswith(b"\r\n")

    reply = parse_reply(line[:-2])

    assert isinstance(reply, WeightReply)
    assert (reply.status, reply.value, reply.unit) == (status, value, unit)
    assert reply.value.as_tuple().exponent == -places  # 1.50 stays 1.50, never 1.5 or 1.500
    assert reply.stable is (status == "S")


@settings(max_examples=300)
@given(
    places=st.integers(0, 6),
    units=st.integers(-(10**7), 10**7),
    unit=st.sampled_from(UNITS),
    cut=st.integers(0, 200),
)
def test_a_cut_off_weight_reply_is_never_a_reading(
    places: int, units: int, unit: str, cut: int
) -> None:
    full = format_weight_reply("S", "S", Decimal(units).scaleb(-places), unit)[:-2]
    partial = full[: cut % len(full)].rstrip(b" ")
    try:
        reply = parse_reply(partial)
    except MtSicsCodecError:
        return
    assert not isinstance(reply, WeightReply), partial


@settings(max_examples=500)
@given(st.binary(max_size=40))
def test_random_bytes_never_parse_into_a_reading(data: bytes) -> None:
    try:
        reply = parse_reply(data)
    except MtSicsCodecError:
        return
    # Anything accepted is short, printable and in the grammar; a weight from noise would
    # need "S S", spaces, digits and a known unit in that order.
    assert not isinstance(reply, WeightReply), data


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=40).filter(lambda b: any(x > 0x7E or x < 0x20 for x in b)))
def test_bytes_outside_printable_ascii_are_always_refused(data: bytes) -> None:
    with pytest.raises(MtSicsCodecError):
        parse_reply(data)


# -- framing ----------------------------------------------------------------------------


def test_crlf_lf_and_cr_all_end_a_line_once() -> None:
    framer = ReplyFramer()
    assert framer.feed(b"S S 1 g\r\nZ A\nTAC A\r\r\n", 0.0) == [b"S S 1 g", b"Z A", b"TAC A"]


def test_a_reply_split_across_reads_is_reassembled() -> None:
    framer = ReplyFramer()
    assert framer.feed(b"S S    10", 0.0) == []
    assert framer.feed(b"0.00 g\r", 0.05) == [b"S S    100.00 g"]
    assert framer.feed(b"\n", 0.06) == []


def test_a_silent_partial_line_becomes_one_half_line() -> None:
    framer = ReplyFramer(half_line_timeout=0.2)
    assert framer.feed(b"S S    10", 1.0) == []
    assert framer.deadline() == pytest.approx(1.2)
    assert framer.expire(1.1) == []
    assert framer.expire(1.25) == [DiscardedReply("half_line", b"S S    10")]
    assert framer.expire(2.0) == []
    assert framer.feed(b"Z A\r\n", 2.1) == [b"Z A"]


def test_flush_gives_up_a_partial_line_before_a_new_command() -> None:
    framer = ReplyFramer()
    framer.feed(b"S D  1", 0.0)
    assert framer.flush() == [DiscardedReply("half_line", b"S D  1")]
    assert framer.feed(b"S S  2 g\r\n", 0.01) == [b"S S  2 g"]


def test_an_overlong_line_is_discarded_once_and_the_next_survives() -> None:
    framer = ReplyFramer(max_length=16)
    events = framer.feed(b"X" * 100 + b"\r\nZ A\r\n", 0.0)
    assert events == [DiscardedReply("garbage", b"X" * 16), b"Z A"]


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_framing_does_not_depend_on_how_bytes_are_chunked(chunks: list[bytes]) -> None:
    whole = b"".join(chunks)
    one = ReplyFramer().feed(whole, 0.0)
    many: list[bytes | DiscardedReply] = []
    framer = ReplyFramer()
    for chunk in chunks:
        many += framer.feed(chunk, 0.0)
    assert many == one
