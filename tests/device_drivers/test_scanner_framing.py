"""Line framing from bytes alone: what becomes a line, and what is thrown away, once."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_drivers.errors import DeviceConfigError
from device_drivers.scanners.framing import DiscardedLine, LineFrame, LineFramer, split_symbology

PRINTABLE = bytes(range(0x20, 0x7F))
GS = 0x1D


def frames(events: list[LineFrame | DiscardedLine]) -> list[bytes]:
    return [e.raw for e in events if isinstance(e, LineFrame)]


def reasons(events: list[LineFrame | DiscardedLine]) -> list[str]:
    return [e.reason for e in events if isinstance(e, DiscardedLine)]


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_any_terminator_ends_a_line_once(terminator: bytes) -> None:
    framer = LineFramer()
    events = framer.feed(b"ABC" + terminator + b"DEF" + terminator, 0.0)
    assert events == [LineFrame(b"ABC"), LineFrame(b"DEF")]


def test_empty_lines_are_skipped_silently() -> None:
    assert LineFramer().feed(b"\r\n\r\r\n\n", 0.0) == []


def test_gs_and_configured_separator_are_part_of_a_line() -> None:
    framer = LineFramer(fnc1_separator="|")
    assert frames(framer.feed(b"10A\x1d21B|17X\r", 0.0)) == [b"10A\x1d21B|17X"]


def test_line_of_exactly_max_length_is_kept() -> None:
    framer = LineFramer(max_length=8)
    assert frames(framer.feed(b"12345678\r", 0.0)) == [b"12345678"]


def test_too_long_line_is_counted_once_and_the_next_line_survives() -> None:
    framer = LineFramer(max_length=8)
    events = framer.feed(b"123456789" + b"X" * 500 + b"\rOK\r", 0.0)
    assert reasons(events) == ["too_long"]
    assert frames(events) == [b"OK"]


def test_not_printable_byte_discards_the_whole_line() -> None:
    framer = LineFramer()
    events = framer.feed(b"AB\x00CD\r\xffEF\rOK\r", 0.0)
    assert reasons(events) == ["not_printable", "not_printable"]
    assert frames(events) == [b"OK"]


def test_half_line_expires_after_silence_not_before() -> None:
    framer = LineFramer(half_line_timeout=0.3)
    assert framer.feed(b"]C101095", 10.0) == []
    assert framer.deadline() == pytest.approx(10.3)
    assert framer.expire(10.29) == []
    assert reasons(framer.expire(10.3)) == ["half_line"]
    assert framer.deadline() is None
    assert frames(framer.feed(b"OK\r", 11.0)) == [b"OK"]


def test_silence_is_measured_from_the_last_byte_so_slow_long_lines_survive() -> None:
    framer = LineFramer(half_line_timeout=0.3)
    for step, byte in enumerate(b"ABCDEFGHIJ"):
        assert framer.feed(bytes([byte]), step * 0.1) == []
    assert frames(framer.feed(b"\r", 1.05)) == [b"ABCDEFGHIJ"]


def test_half_line_is_noticed_when_the_next_bytes_arrive_late() -> None:
    framer = LineFramer(half_line_timeout=0.3)
    framer.feed(b"ABC", 0.0)
    events = framer.feed(b"DEF\r", 0.5)
    assert events == [DiscardedLine("half_line", b"ABC"), LineFrame(b"DEF")]


def test_bad_line_cut_off_by_silence_counts_with_its_first_fault() -> None:
    framer = LineFramer(half_line_timeout=0.3)
    framer.feed(b"A\x00B", 0.0)
    assert reasons(framer.expire(1.0)) == ["not_printable"]


def test_too_long_then_silence_is_not_counted_twice() -> None:
    framer = LineFramer(max_length=4, half_line_timeout=0.3)
    assert reasons(framer.feed(b"123456", 0.0)) == ["too_long"]
    assert framer.expire(1.0) == []
    assert frames(framer.feed(b"OK\r", 1.1)) == [b"OK"]


@pytest.mark.parametrize("separator", ["", "||", "A", "7", " ", "\r", "\n", "\x00", "é"])
def test_unusable_fnc1_separator_is_a_config_error(separator: str) -> None:
    with pytest.raises(DeviceConfigError):
        LineFramer(fnc1_separator=separator)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("]C1010950", ("]C1", "010950")),
        ("]E09506000134352", ("]E0", "9506000134352")),
        ("]Q3X", ("]Q3", "X")),
        ("]1AB", (None, "]1AB")),
        ("ABC", (None, "ABC")),
        ("]C", (None, "]C")),
    ],
)
def test_split_symbology(text: str, expected: tuple[str | None, str]) -> None:
    assert split_symbology(text) == expected


# -- properties ---------------------------------------------------------------------

ALLOWED = set(PRINTABLE) | {GS}
_chunks = st.lists(
    st.tuples(st.binary(max_size=80), st.floats(min_value=0.0, max_value=1.0)), max_size=20
)


@settings(max_examples=300)
@given(chunks=_chunks, max_length=st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_yield_a_frame_with_forbidden_bytes(
    chunks: list[tuple[bytes, float]], max_length: int
) -> None:
    framer = LineFramer(max_length=max_length)
    now = 0.0
    events: list[LineFrame | DiscardedLine] = []
    for data, gap in chunks:
        now += gap
        events += framer.feed(data, now)
    events += framer.expire(now + 10)
    for raw in frames(events):
        assert raw
        assert set(raw) <= ALLOWED
        assert len(raw) <= max_length


@settings(max_examples=300)
@given(
    line=st.binary(min_size=1, max_size=256).map(
        lambda b: bytes(PRINTABLE[x % len(PRINTABLE)] for x in b)
    ),
    terminator=st.sampled_from([b"\r", b"\n", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=260), max_size=10),
)
def test_valid_line_split_anywhere_yields_the_same_frame(
    line: bytes, terminator: bytes, cuts: list[int]
) -> None:
    wire = line + terminator
    bounds = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    framer = LineFramer()
    events: list[LineFrame | DiscardedLine] = []
    for step, (start, end) in enumerate(itertools.pairwise(bounds)):
        events += framer.feed(wire[start:end], step * 0.01)
    assert events == [LineFrame(line)]
    assert framer.deadline() is None


_printable_text = st.binary(min_size=1, max_size=30).map(
    lambda b: bytes(PRINTABLE[x % len(PRINTABLE)] for x in b)
)
_forbidden = st.integers(min_value=0, max_value=255).filter(
    lambda b: b not in ALLOWED and b not in (0x0D, 0x0A)
)
_segment = st.one_of(
    st.tuples(st.just("good"), _printable_text),
    st.tuples(
        st.just("not_printable"),
        st.tuples(_printable_text, _forbidden, _printable_text).map(
            lambda t: t[0] + bytes([t[1]]) + t[2]
        ),
    ),
    st.tuples(
        st.just("too_long"),
        st.integers(min_value=33, max_value=200).map(lambda n: b"L" * n),
    ),
    st.tuples(st.just("half_line"), _printable_text),
)


@settings(max_examples=300)
@given(segments=st.lists(_segment, max_size=25), terminator=st.sampled_from([b"\r", b"\r\n"]))
def test_every_discarded_line_is_counted_exactly_once(
    segments: list[tuple[str, bytes]], terminator: bytes
) -> None:
    framer = LineFramer(max_length=32, half_line_timeout=0.3)
    now = 0.0
    events: list[LineFrame | DiscardedLine] = []
    for kind, body in segments:
        if kind == "half_line":
            events += framer.feed(body, now)
            now += 0.5  # silence past the timeout before the next line starts
        else:
            events += framer.feed(body + terminator, now)
            now += 0.01
    events += framer.expire(now + 1)
    expected = Counter(kind for kind, _ in segments if kind != "good")
    assert Counter(reasons(events)) == expected
    assert frames(events) == [body for kind, body in segments if kind == "good"]
