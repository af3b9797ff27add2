"""The Toledo 8217 codec from bytes alone: exact weights, status bits, nothing lenient."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import RejectedInputError
from device_drivers.scales.toledo8217 import (
    WEIGHT_REQUEST,
    DiscardedFrame,
    FrameFramer,
    StatusReply,
    Toledo8217CodecError,
    Toledo8217Status,
    WeightReply,
    format_status_reply,
    format_weight_reply,
    parse_frame,
)

# The grammar of a good frame, written out here so the tests do not trust the code under test.
GOOD_WEIGHT_FRAME = re.compile(rb"\x02 *[0-9]+(\.[0-9]+)? *N?\r", re.DOTALL)
GOOD_STATUS_FRAME = re.compile(rb"\x02\?[\x00-\x7f]\r", re.DOTALL)


def test_the_request_is_a_bare_w() -> None:
    assert WEIGHT_REQUEST == b"W"


@pytest.mark.parametrize(
    ("raw", "value", "net"),
    [
        (b"\x0201.250\r", Decimal("1.250"), False),
        (b"\x02  2.50N\r", Decimal("2.50"), True),
        (b"\x0200.000\r", Decimal("0.000"), False),
        (b"\x0212\r", Decimal(12), False),
        (b"\x02 15.000 N\r", Decimal("15.000"), True),
    ],
)
def test_weight_frames_are_exact_decimals_with_their_decimals_kept(
    raw: bytes, value: Decimal, net: bool
) -> None:
    reply = parse_frame(raw)
    assert reply == WeightReply(value, net, raw)
    assert isinstance(reply, WeightReply)
    assert reply.value.as_tuple() == value.as_tuple()  # "1.250", not "1.25": the division


@pytest.mark.parametrize(
    ("byte", "flags"),
    [
        # What a real scale sends: a printable character, bit 6 always set.
        (ord("@"), Toledo8217Status(0)),  # no condition
        (ord("A"), Toledo8217Status.MOTION),
        (ord("B"), Toledo8217Status.OVER_CAPACITY),
        (ord("D"), Toledo8217Status.UNDER_ZERO),
        (ord("H"), Toledo8217Status.OUTSIDE_ZERO_CAPTURE),
        (ord("P"), Toledo8217Status.CENTRE_OF_ZERO),
        (ord("`"), Toledo8217Status.NET),
        (ord("a"), Toledo8217Status.MOTION | Toledo8217Status.NET),
        (ord("b"), Toledo8217Status.OVER_CAPACITY | Toledo8217Status.NET),
        (ord("M"), Toledo8217Status.MOTION | Toledo8217Status.UNDER_ZERO | 0x08),
    ],
)
def test_status_bits_zero_to_five_of_a_printable_status_byte(
    byte: int, flags: Toledo8217Status
) -> None:
    raw = bytes([0x02, ord("?"), byte, 0x0D])
    reply = parse_frame(raw)
    assert reply == StatusReply(flags, raw)


@pytest.mark.parametrize(("byte", "flags"), [(0x01, 0x01), (0x24, 0x24), (0x0D, 0x0D)])
def test_bit_six_clear_reads_the_same_bits(byte: int, flags: int) -> None:
    """Bit 6 means nothing (a real scale always sets it), so a byte without it reads alike."""
    reply = parse_frame(bytes([0x02, ord("?"), byte, 0x0D]))
    assert isinstance(reply, StatusReply)
    assert reply.status == Toledo8217Status(flags)


def test_status_reply_says_its_bits_in_words() -> None:
    reply = parse_frame(b"\x02?a\r")
    assert isinstance(reply, StatusReply)
    assert reply.describe() == "motion, net"
    no_condition = parse_frame(b"\x02?@\r")
    assert isinstance(no_condition, StatusReply)
    assert no_condition.describe() == "no condition"


def test_the_status_a_scale_sends_is_printable() -> None:
    assert format_status_reply(Toledo8217Status.MOTION) == b"\x02?A\r"
    assert format_status_reply(0) == b"\x02?@\r"
    assert format_status_reply(Toledo8217Status.UNDER_ZERO | Toledo8217Status.NET) == b"\x02?d\r"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x02\r",
        b"01.250\r",  # no STX
        b"\x0201.250",  # no CR
        b"\x02-1.250\r",  # a sign: below zero is a status, never a negative weight
        b"\x021.2.5\r",
        b"\x02.5\r",
        b"\x025.\r",
        b"\x021,250\r",
        b"\x021.250 kg\r",
        b"\x021.250NN\r",
        b"\x02N\r",
        b"\x02 \r",
        b"\x02?\r",  # status byte missing
        b"\x02?\x01\x01\r",  # two status bytes
        b"\x02?\xc1\r",  # bit 7: the parity bit, so the port is not set to 7 data bits
        b"\x02?F\r",  # over capacity and under zero at once: damaged
        b"\x02?\x06\r",  # the same, bit 6 clear
        b"\x02" + b"1" * 30 + b"\r",  # too long to be a weight
        b"\x02\xb1.250\r",  # '1' with the parity bit left on
        b"\x021.250\r\r",
    ],
)
def test_malformed_frames_are_codec_errors_never_weights(raw: bytes) -> None:
    with pytest.raises(Toledo8217CodecError) as caught:
        parse_frame(raw)
    assert isinstance(caught.value, RejectedInputError)
    assert caught.value.reason == "garbage"


def test_format_helpers_refuse_what_a_scale_cannot_send() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        format_weight_reply(Decimal(-1))
    with pytest.raises(ValueError, match="bits 0-5"):
        format_status_reply(0x40)


# -- property tests ------------------------------------------------------------------------

WEIGHTS = st.decimals(min_value=0, max_value=99999, places=3, allow_nan=False) | st.decimals(
    min_value=0, max_value=999, places=1, allow_nan=False
)


@settings(max_examples=300, deadline=None)
@given(value=WEIGHTS, net=st.booleans(), width=st.integers(0, 9))
def test_weight_round_trip(value: Decimal, net: bool, width: int) -> None:
    raw = format_weight_reply(value, net=net, width=width)
    reply = parse_frame(raw)
    assert isinstance(reply, WeightReply)
    assert reply.value == value
    assert reply.value.as_tuple().exponent == value.as_tuple().exponent
    assert reply.net is net
    assert reply.raw == raw


@settings(max_examples=200, deadline=None)
@given(flags=st.integers(0, 0x3F).filter(lambda b: b & 0x06 != 0x06))
def test_status_round_trip(flags: int) -> None:
    raw = format_status_reply(flags)
    assert 0x40 <= raw[2] <= 0x7F  # printable, as a real scale sends it
    reply = parse_frame(raw)
    assert isinstance(reply, StatusReply)
    assert int(reply.status) == flags


@settings(max_examples=500, deadline=None)
@given(byte=st.integers(0, 0xFF))
def test_any_status_byte_reads_as_its_bits_zero_to_five_or_is_refused(byte: int) -> None:
    """From the byte alone: bits 0-5 are the status; bit 6 is ignored; bit 7 (the parity
    bit, which a 7E1 port strips) and over-capacity-with-under-zero are refused."""
    raw = bytes([0x02, ord("?"), byte, 0x0D])
    bits = byte & 0x3F
    if byte & 0x80 or bits & 0x06 == 0x06:
        with pytest.raises(Toledo8217CodecError):
            parse_frame(raw)
        return
    reply = parse_frame(raw)
    assert isinstance(reply, StatusReply)
    assert int(reply.status) == bits
    assert (Toledo8217Status.MOTION in reply.status) is bool(byte & 0x01)
    assert (Toledo8217Status.OVER_CAPACITY in reply.status) is bool(byte & 0x02)
    assert (Toledo8217Status.UNDER_ZERO in reply.status) is bool(byte & 0x04)


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=30))
def test_random_frames_are_a_weight_only_when_they_are_well_formed(raw: bytes) -> None:
    try:
        reply = parse_frame(raw)
    except Toledo8217CodecError:
        return
    if isinstance(reply, WeightReply):
        assert GOOD_WEIGHT_FRAME.fullmatch(raw)
    else:
        assert GOOD_STATUS_FRAME.fullmatch(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=30).filter(lambda b: not b.startswith(b"\x02")))
def test_random_bytes_without_stx_never_yield_a_weight(raw: bytes) -> None:
    with pytest.raises(Toledo8217CodecError):
        parse_frame(raw)


NOISE = st.binary(max_size=40).map(lambda b: b.replace(b"\x02", b""))


@settings(max_examples=300, deadline=None)
@given(
    noise=st.lists(NOISE, max_size=4),
    chunks=st.lists(st.binary(min_size=1, max_size=8), max_size=12),
)
def test_framer_only_emits_frames_it_was_given_whole(
    noise: list[bytes], chunks: list[bytes]
) -> None:
    """Whatever arrives, every frame out is STX ... CR, cut from the input as it came."""
    stream = b"".join(noise) + b"".join(chunks)
    framer = FrameFramer(half_line_timeout=0.2)
    events: list[bytes | DiscardedFrame] = []
    now = 0.0
    for start in range(0, len(stream), 5):
        events += framer.feed(stream[start : start + 5], now)
        now += 0.01
    events += framer.expire(now + 1.0)
    for event in events:
        if isinstance(event, bytes):
            assert event in stream
            assert event[0] == 0x02
            assert event[-1] == 0x0D
            assert len(event) <= 24


def test_framer_keeps_good_frames_among_noise_and_half_frames() -> None:
    framer = FrameFramer(half_line_timeout=0.2)
    events = framer.feed(b"\xf1\x00\x0201.2\x02?\x0d\r\x0202.000N\rzz", 0.0)
    assert events == [
        DiscardedFrame("garbage", b"\xf1\x00"),
        DiscardedFrame("half_line", b"\x0201.2"),
        b"\x02?\r\r",  # the status byte may be CR: the frame is four bytes whatever it is
        b"\x0202.000N\r",
    ]
    assert framer.expire(0.1) == []
    assert framer.expire(0.3) == [DiscardedFrame("garbage", b"zz")]
    assert framer.deadline() is None


def test_framer_gives_up_on_a_silent_half_frame_and_on_flush() -> None:
    framer = FrameFramer(half_line_timeout=0.2)
    assert framer.feed(b"\x0201", 0.0) == []
    assert framer.deadline() == pytest.approx(0.2)
    assert framer.expire(0.25) == [DiscardedFrame("half_line", b"\x0201")]
    framer.feed(b"\x0203", 1.0)
    assert framer.flush() == [DiscardedFrame("half_line", b"\x0203")]
    assert framer.flush() == []


def test_a_frame_too_long_is_noise_up_to_the_next_stx() -> None:
    framer = FrameFramer(half_line_timeout=0.2)
    events = framer.feed(b"\x02" + b"1" * 40 + b"\r\x0201.000\r", 0.0)
    assert [type(e) for e in events] == [DiscardedFrame, bytes]
    assert isinstance(events[0], DiscardedFrame)
    assert events[0].reason == "garbage"
    assert events[1] == b"\x0201.000\r"
