"""~HS, ~HI and label-counter replies, from bytes alone."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from device_drivers.errors import RejectedInputError
from device_drivers.printers import (
    PrinterStatus,
    parse_host_identification,
    parse_host_status,
    parse_label_counter,
)
from device_drivers.printers.host_status import (
    host_identification_reply_length,
    host_status_reply_length,
    label_counter_reply_length,
)

READY_REPLY = (
    b"\x02030,0,0,1245,000,0,0,0,000,0,0,0\x03\r\n"
    b"\x02001,0,0,0,1,2,6,0,00000000,1,000\x03\r\n"
    b"\x021234,0\x03\r\n"
)
WELL_FORMED = re.compile(
    rb"\x02[0-9]+(?:,[0-9]+){11}\x03\r\n\x02[0-9]+(?:,[0-9]+){10}\x03\r\n\x02[0-9]+,[0-9]+\x03\r\n"
)


def encode(status: PrinterStatus, noise: tuple[int, int, int, int, int, int]) -> bytes:
    """The test's own encoder, straight from the field list in the programming guide;
    ``noise`` fills the fields the parser is told to ignore."""
    interface, function, width_mode, password, static_ram, unused = noise
    first = (
        f"{interface:03d},{status.paper_out:d},{status.paused:d},{status.label_length_dots:04d},"
        f"{status.formats_in_buffer:03d},{status.buffer_full:d},{status.diagnostic_mode:d},"
        f"{status.partial_format:d},{unused:03d},{status.corrupt_ram:d},"
        f"{status.under_temperature:d},{status.over_temperature:d}"
    )
    second = (
        f"{function:03d},0,{status.head_open:d},{status.ribbon_out:d},"
        f"{status.thermal_transfer:d},{status.print_mode},{width_mode},{status.label_waiting:d},"
        f"{status.labels_remaining:08d},1,{status.graphics_stored:03d}"
    )
    third = f"{password:04d},{static_ram}"
    return b"".join(b"\x02" + line.encode() + b"\x03\r\n" for line in (first, second, third))


statuses = st.builds(
    PrinterStatus,
    online=st.just(True),
    paper_out=st.booleans(),
    paused=st.booleans(),
    label_length_dots=st.integers(0, 9999),
    formats_in_buffer=st.integers(0, 999),
    buffer_full=st.booleans(),
    diagnostic_mode=st.booleans(),
    partial_format=st.booleans(),
    corrupt_ram=st.booleans(),
    under_temperature=st.booleans(),
    over_temperature=st.booleans(),
    head_open=st.booleans(),
    ribbon_out=st.booleans(),
    thermal_transfer=st.booleans(),
    print_mode=st.integers(0, 9),
    label_waiting=st.booleans(),
    labels_remaining=st.integers(0, 99_999_999),
    graphics_stored=st.integers(0, 999),
    detail=st.none(),
)
noises = st.tuples(*(st.integers(0, 999) for _ in range(4)), st.integers(0, 1), st.integers(0, 999))


@given(statuses, noises)
def test_encoded_state_parses_back_to_the_same_state(
    status: PrinterStatus, noise: tuple[int, int, int, int, int, int]
) -> None:
    reply = encode(status, noise)

    assert host_status_reply_length(reply + b"extra") == len(reply)
    assert parse_host_status(reply) == status


@given(statuses, noises, st.data())
def test_a_reply_cut_short_never_parses(
    status: PrinterStatus, noise: tuple[int, int, int, int, int, int], data: st.DataObject
) -> None:
    reply = encode(status, noise)
    cut = data.draw(st.integers(0, len(reply) - 1))

    assert host_status_reply_length(reply[:cut]) is None
    with pytest.raises(RejectedInputError):
        parse_host_status(reply[:cut])


@given(st.binary(max_size=200))
def test_random_bytes_never_parse_as_ready(noise: bytes) -> None:
    assume(not WELL_FORMED.fullmatch(noise))
    with pytest.raises(RejectedInputError) as caught:
        parse_host_status(noise)
    assert caught.value.reason == "garbled_status"


@given(st.binary(min_size=1, max_size=20), st.sampled_from(["before", "after"]))
def test_noise_around_a_good_reply_is_refused(noise: bytes, where: str) -> None:
    reply = noise + READY_REPLY if where == "before" else READY_REPLY + noise
    with pytest.raises(RejectedInputError):
        parse_host_status(reply)


def test_a_ready_printer() -> None:
    status = parse_host_status(READY_REPLY)

    assert status.ready
    assert status.idle
    assert status.conditions == ("ready",)
    assert (status.label_length_dots, status.print_mode, status.thermal_transfer) == (1245, 2, True)


@pytest.mark.parametrize(
    ("change", "condition", "ready"),
    [
        ({"paper_out": True}, "paper_out", False),
        ({"paused": True}, "paused", False),
        ({"head_open": True}, "head_open", False),
        ({"ribbon_out": True}, "ribbon_out", False),
        ({"buffer_full": True}, "buffer_full", False),
        ({"over_temperature": True}, "over_temperature", False),
        ({"under_temperature": True}, "under_temperature", True),
        ({"corrupt_ram": True}, "corrupt_ram", True),
        ({"partial_format": True}, "partial_format", True),
    ],
)
def test_conditions(change: dict[str, Any], condition: str, ready: bool) -> None:
    status = replace(parse_host_status(READY_REPLY), **change)

    assert status.conditions == (condition,)
    assert status.ready is ready
    assert status.idle is (ready and condition != "partial_format")


def test_busy_printer_is_ready_but_not_idle() -> None:
    status = replace(parse_host_status(READY_REPLY), formats_in_buffer=2, labels_remaining=5)

    assert status.ready
    assert not status.idle


def test_offline_is_never_ready() -> None:
    status = PrinterStatus.offline("no reply to ~HS")

    assert status.conditions == ("offline",)
    assert not status.ready
    assert status.as_dict()["detail"] == "no reply to ~HS"


@pytest.mark.parametrize(
    "reply",
    [
        READY_REPLY.replace(b"030,0,0", b"030,2,0"),  # a flag that is not 0/1
        READY_REPLY.replace(b"1245", b"12a5"),
        READY_REPLY.replace(b",1,000\x03", b",1\x03"),  # field missing
        READY_REPLY.replace(b"\x021234,0", b"\x021234,0,9"),
        READY_REPLY.replace(b"\r\n", b"\n"),
        READY_REPLY.replace(b"\x03\r\n\x02001", b"\x03\r\n\x02\x02001"),
        READY_REPLY[:-1],
    ],
)
def test_malformed_replies_are_refused(reply: bytes) -> None:
    with pytest.raises(RejectedInputError):
        parse_host_status(reply)


@pytest.mark.parametrize(
    "reply",
    [b"\x02ZT410-203dpi,V75.20.01Z,8,8176KB\x03\r\n", b"ZT410-203dpi,V75.20.01Z,8,8176KB\r\n"],
)
def test_host_identification(reply: bytes) -> None:
    assert host_identification_reply_length(reply + b"x") == len(reply)
    ident = parse_host_identification(reply)

    assert (ident.model, ident.firmware, ident.dots_per_mm, ident.memory_kb, ident.options) == (
        "ZT410-203dpi",
        "V75.20.01Z",
        8,
        8176,
        (),
    )


def test_host_identification_with_options_and_garbage() -> None:
    ident = parse_host_identification(b"\x02GK420d,V61.17.16Z,8,2104KB,CUTTER\x03\r\n")
    assert ident.options == ("CUTTER",)
    for reply in (b"\x02\x03\r\n", b"\xff\xfe\r\n", b"model-only\r\n"):
        with pytest.raises(RejectedInputError):
            parse_host_identification(reply)


def test_label_counter() -> None:
    assert label_counter_reply_length(b'"123"\r\n') == 5
    assert label_counter_reply_length(b'"12') is None
    assert parse_label_counter(b'"123"') == 123
    assert parse_label_counter(b'"?"') is None
    for reply in (b'"12a"', b"123", b'""'):
        with pytest.raises(RejectedInputError):
            parse_label_counter(reply)
