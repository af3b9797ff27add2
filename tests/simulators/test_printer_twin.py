"""The printer twin on its own, through raw sockets: what a driver would see on the wire."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.printer import ZplPrinterTwin, ZplStreamParser, decode_code128, parse_format
from tests.patience import patience_timeout

LABEL = b"^XA^FXjxc-job:one^FS^CI28^PQ2^FO10,10^A0N,30,30^FH_^FDhi_5Ethere^FS^XZ"


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    yield
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, f"leaked file descriptors: {sorted(leaked)}"
    assert threading.active_count() <= threads_before


@pytest.fixture
def twin() -> Iterator[ZplPrinterTwin]:
    with ZplPrinterTwin() as printer:
        yield printer


def connect(twin: ZplPrinterTwin) -> socket.socket:
    return socket.create_connection(twin.address, timeout=patience_timeout(2))


def read_reply(sock: socket.socket, frames: int, within: float = 1.0) -> bytes:
    received = b""
    give_up_at = time.monotonic() + within
    while received.count(b"\x03\r\n") < frames:
        remaining = give_up_at - time.monotonic()
        if remaining <= 0 or not select.select([sock], [], [], remaining)[0]:
            break
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received


def host_status(sock: socket.socket) -> list[list[str]]:
    sock.sendall(b"~HS")
    reply = read_reply(sock, 3)
    lines = reply.split(b"\r\n")[:3]
    assert all(line.startswith(b"\x02") and line.endswith(b"\x03") for line in lines), reply
    return [line[1:-1].decode().split(",") for line in lines]


def test_host_status_has_three_framed_strings_of_the_documented_shape(
    twin: ZplPrinterTwin,
) -> None:
    with connect(twin) as sock:
        first, second, third = host_status(sock)

    assert (len(first), len(second), len(third)) == (12, 11, 2)
    assert first[1:3] == ["0", "0"]  # paper out, pause
    assert second[2:4] == ["0", "0"]  # head up, ribbon out
    assert len(second[8]) == 8  # labels remaining, eight digits


def test_host_status_reflects_faults_and_the_buffer(twin: ZplPrinterTwin) -> None:
    twin.pause()
    twin.set_paper_out()
    twin.set_head_open()
    twin.set_ribbon_out()
    with connect(twin) as sock:
        sock.sendall(LABEL + LABEL)
        first, second, _ = host_status(sock)

    assert (first[1], first[2], first[4]) == ("1", "1", "002")
    assert (second[2], second[3]) == ("1", "1")
    assert twin.labels() == []


def test_labels_remaining_counts_down_a_slow_batch(twin: ZplPrinterTwin) -> None:
    twin.set_slow(print_delay=0.3)
    with connect(twin) as sock:
        sock.sendall(LABEL)
        time.sleep(0.15)
        first, second, _ = host_status(sock)
        assert first[4] == "000"  # taken from the buffer, now printing
        assert second[8] in ("00000002", "00000001")
        assert twin.wait_for_labels(1, timeout=patience_timeout(3))
        _, second, _ = host_status(sock)
    assert second[8] == "00000000"
    assert twin.odometer == 2


def test_printed_labels_are_kept_with_their_fields(tmp_path: Path) -> None:
    with ZplPrinterTwin(store=tmp_path / "labels") as twin, connect(twin) as sock:
        for byte in LABEL:  # arriving one byte at a time changes nothing
            sock.send(bytes([byte]))
        sock.sendall(b"\r\n" + LABEL.replace(b"one", b"two"))
        [first, second] = twin.wait_for_labels(2)

    assert (first.job_id, first.quantity, first.texts, first.problems) == (
        "one",
        2,
        ["hi^there"],
        (),
    )
    assert second.job_id == "two"
    stored = sorted(p.name for p in (tmp_path / "labels").iterdir())
    assert stored == ["00001-one.zpl", "00002-two.zpl"]
    assert (tmp_path / "labels" / "00001-one.zpl").read_bytes() == LABEL


def test_identification_and_label_counter(twin: ZplPrinterTwin) -> None:
    with connect(twin) as sock:
        sock.sendall(b"~HI")
        assert read_reply(sock, 1) == b"\x02ZT410-203dpi,V75.20.01Z,8,8176KB\x03\r\n"
        sock.sendall(LABEL)
        twin.wait_for_labels(1)
        assert getvar(sock, "odometer.total_label_count") == b'"2"'
        assert getvar(sock, "no.such.thing") == b'"?"'


def getvar(sock: socket.socket, name: str) -> bytes:
    sock.sendall(f'! U1 getvar "{name}"\r\n'.encode())
    received = b""
    while received.count(b'"') < 2 and select.select([sock], [], [], 1.0)[0]:
        received += sock.recv(100)
    return received


def test_muted_status_sends_nothing(twin: ZplPrinterTwin) -> None:
    twin.mute_status()
    with connect(twin) as sock:
        sock.sendall(b"~HS")
        assert read_reply(sock, 3, within=0.3) == b""
        twin.mute_status(False)
        assert len(host_status(sock)) == 3


def test_like_current_firmware_it_is_silent_while_out_of_paper() -> None:
    with ZplPrinterTwin(silent_when_faulted=True) as twin, connect(twin) as sock:
        twin.set_paper_out()
        sock.sendall(b"~HS")
        assert read_reply(sock, 3, within=0.3) == b""
        twin.pause()
        twin.set_paper_out(False)
        first, _, _ = host_status(sock)
        assert first[2] == "1"  # paused answers, with the pause flag


def test_a_control_command_inside_a_format_runs_at_once(twin: ZplPrinterTwin) -> None:
    with connect(twin) as sock:
        sock.sendall(b"^XA^FO1,1~HS")
        first, _, _ = [line[1:-1].split(b",") for line in read_reply(sock, 3).split(b"\r\n")[:3]]
        assert first[7] == b"1"  # a partial format is in progress
        sock.sendall(b"^FDx^FS^XZ")
        [label] = twin.wait_for_labels(1)
    assert label.raw == b"^XA^FO1,1^FDx^FS^XZ"


def test_drop_mid_job_loses_the_half_format(twin: ZplPrinterTwin) -> None:
    twin.drop_next("mid_job")
    with connect(twin) as sock:
        sock.sendall(LABEL + b"~HS")
        assert read_reply(sock, 3) == b""  # closed without an answer
    with connect(twin) as sock:
        first, _, _ = host_status(sock)
    assert (first[4], first[7]) == ("000", "0")
    assert twin.received() == []


def test_drop_after_job_keeps_the_format_but_not_the_connection(twin: ZplPrinterTwin) -> None:
    twin.drop_next("after_job")
    with connect(twin) as sock:
        sock.sendall(LABEL + b"~HS")
        assert read_reply(sock, 3) == b""
    assert [label.job_id for label in twin.wait_for_labels(1)] == ["one"]
    with connect(twin) as sock:
        assert len(host_status(sock)) == 3  # only the next connection was affected


def test_restart_on_the_same_port(twin: ZplPrinterTwin) -> None:
    port = twin.port
    stale = connect(twin)
    twin.close()
    with stale:
        assert stale.recv(10) == b""
    with ZplPrinterTwin(port=port) as second, connect(second) as sock:
        assert len(host_status(sock)) == 3


def test_close_with_connections_open_leaves_no_threads() -> None:
    twin = ZplPrinterTwin()
    socks = [connect(twin) for _ in range(3)]
    socks[0].sendall(b"^XA^FO1,1")
    time.sleep(0.05)
    twin.close()
    twin.close()
    for sock in socks:
        sock.close()


# -- the format reader ------------------------------------------------------------------


def test_unpaired_subset_c_digit_is_reported_as_the_printer_would_drop_it() -> None:
    content, problems = decode_code128(">;>80112345>6AB")
    assert content == "\x1d011234AB"
    assert len(problems) == 1
    assert "drops it" in problems[0]


def test_code128_invocations() -> None:
    assert decode_code128(">;>8012345>6AB>8>51234") == ("\x1d012345AB\x1d1234", [])
    assert decode_code128("PLAIN") == ("PLAIN", [])
    assert decode_code128(">:A>6B")[1]  # >6 in subset B is FNC4, not modelled


def test_format_problems_are_recorded_not_raised() -> None:
    label = parse_format(b"^XA^FH_^FDa_ZZb^FS^FO1,1^FDopen^XZ")
    assert len(label.problems) == 2
    assert label.texts == ["a_ZZb"]


def test_stream_parser_separates_formats_controls_and_sgd() -> None:
    parser = ZplStreamParser()
    events = parser.feed(b'junk~HI! U1 getvar "x"\r\n^XA^FDa^FS')
    assert parser.in_format
    events += parser.feed(b"^XZ~H")
    events += parser.feed(b"S")
    assert [type(e).__name__ for e in events] == ["_Control", "_Sgd", "_Format", "_Control"]
    assert not parser.in_format
