"""The Toledo 8217 twin on its own: what a reader of its pty sees, byte for byte."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from simulators.toledo8217 import GARBAGE, HELP, Toledo8217Twin, apply_command
from tests.patience import patience_timeout


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    yield
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, f"leaked file descriptors: {sorted(leaked)}"
    assert threading.active_count() <= threads_before


class Port:
    """The driver's end of the wire, kept dumb on purpose: bytes out, bytes in."""

    def __init__(self, path: str | Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def ask(self, request: bytes = b"W", size: int = 1, within: float = 3.0) -> bytes:
        os.write(self.fd, request)
        return self.read(size, within)

    def frames(self, count: int, request: bytes = b"W", within: float = 3.0) -> list[bytes]:
        """Send ``request`` and collect ``count`` STX…CR frames (4-byte status frames too)."""
        os.write(self.fd, request)
        data = b""
        give_up_at = time.monotonic() + within
        while len(split_frames(data)) < count and time.monotonic() < give_up_at:
            data += self.read(1, give_up_at - time.monotonic())
        return split_frames(data)

    def read(self, size: int, within: float = 3.0) -> bytes:
        received = b""
        give_up_at = time.monotonic() + within
        while len(received) < size:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                try:
                    received += os.read(self.fd, 4096)
                except OSError:  # EIO: the other side is gone
                    break
        return received

    def close(self) -> None:
        os.close(self.fd)


def split_frames(data: bytes) -> list[bytes]:
    frames, start = [], 0
    while (begin := data.find(b"\x02", start)) >= 0:
        end = begin + 3 if data[begin + 1 : begin + 2] == b"?" else data.find(b"\r", begin)
        if end < 0 or end >= len(data):
            break
        frames.append(data[begin : end + 1])
        start = end + 1
    return frames


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[Toledo8217Twin]:
    with Toledo8217Twin(tmp_path / "toledo", weight=Decimal("1.25")) as twin:
        yield twin


@pytest.fixture
def port(twin: Toledo8217Twin) -> Iterator[Port]:
    assert twin.device_path is not None
    port = Port(twin.device_path)
    yield port
    port.close()


def test_w_is_answered_with_the_weight_zero_padded_and_no_unit(
    twin: Toledo8217Twin, port: Port
) -> None:
    assert port.frames(1) == [b"\x0201.250\r"]
    assert twin.received == bytearray(b"W")


def test_a_keypad_tare_makes_the_weight_net_and_says_n(twin: Toledo8217Twin, port: Port) -> None:
    twin.set_tare(Decimal("0.25"))
    assert port.frames(1) == [b"\x0201.000N\r"]
    assert twin.net == Decimal("1.000")


def test_a_swinging_load_is_reported_as_motion_then_settles(
    twin: Toledo8217Twin, port: Port
) -> None:
    twin.set_weight(Decimal(2), settle=30)
    assert port.frames(1) == [b"\x02?A\r"]  # bit 6 always set: a printable character
    twin.set_tare(Decimal(1))
    assert port.frames(1) == [b"\x02?a\r"]  # motion + net
    twin.clear_faults()  # settles at once
    assert port.frames(1) == [b"\x0201.000N\r"]


def test_an_eager_motion_filter_sends_changing_weights() -> None:
    with Toledo8217Twin(weight=Decimal(2), report_motion=False) as twin:
        assert twin.device_path is not None
        port = Port(twin.device_path)
        try:
            twin.wobble(30)
            seen = {port.frames(1)[0] for _ in range(4)}
            assert len(seen) > 1
            assert b"\x0202.000\r" not in seen
        finally:
            port.close()


@pytest.mark.parametrize(
    ("action", "status"),
    [("overload", ord("B")), ("underload", ord("D"))],
)
def test_forced_states_are_status_frames(
    twin: Toledo8217Twin, port: Port, action: str, status: int
) -> None:
    getattr(twin, action)()
    assert port.frames(1) == [bytes([0x02, ord("?"), status, 0x0D])]
    twin.clear_faults()
    assert port.frames(1) == [b"\x0201.250\r"]


def test_capacity_and_zero_bound_what_the_scale_weighs(twin: Toledo8217Twin, port: Port) -> None:
    twin.set_weight(Decimal("15.001"))
    assert port.frames(1) == [b"\x02?B\r"]
    twin.set_weight(Decimal("-0.5"))
    assert port.frames(1) == [b"\x02?D\r"]
    twin.set_weight(Decimal(0))
    assert port.frames(1) == [b"\x0200.000\r"]


def test_an_unknown_command_gets_no_reply(twin: Toledo8217Twin, port: Port) -> None:
    """The protocol notes document ``W`` alone and no answer to anything else."""
    assert port.ask(b"X", within=0.3) == b""
    assert port.frames(1, request=b"W\r\n") == [b"\x0201.250\r"]  # CR/LF are ignored
    assert twin.received == bytearray(b"XW\r\n")


def test_every_status_byte_is_printable_with_bit_six_set(twin: Toledo8217Twin, port: Port) -> None:
    twin.set_tare(Decimal("0.5"))
    seen = []
    for action in (twin.overload, twin.underload, lambda: twin.wobble(30)):
        twin.clear_faults()
        action()
        (frame,) = port.frames(1)
        seen.append(frame)
    assert seen == [b"\x02?b\r", b"\x02?d\r", b"\x02?a\r"]  # each with net (bit 5)
    assert all(0x40 <= frame[2] <= 0x7E for frame in seen)


def test_wire_faults(twin: Toledo8217Twin, port: Port) -> None:
    twin.garble_replies(1)
    assert port.ask(size=len(GARBAGE)) == GARBAGE
    assert not set(GARBAGE) & {0x02, 0x0D}
    assert not {b & 0x7F for b in GARBAGE} & {0x02, 0x0D}  # not even on a 7-bit port

    twin.cut_replies(1)
    half = port.ask(size=3, within=0.5)
    assert half == b"\x0201"  # half of the frame, and never its CR
    assert port.read(1, within=0.3) == b""

    twin.no_reply(1)
    assert port.ask(within=0.3) == b""
    assert port.frames(1) == [b"\x0201.250\r"]

    twin.send_garbage()
    assert port.read(len(GARBAGE)) == GARBAGE


def test_no_reply_until_cleared(twin: Toledo8217Twin, port: Port) -> None:
    twin.no_reply(None)
    assert port.ask(within=0.3) == b""
    assert port.ask(within=0.3) == b""
    twin.clear_faults()
    assert port.frames(1) == [b"\x0201.250\r"]


def test_slow_replies_arrive_late_and_in_order(twin: Toledo8217Twin, port: Port) -> None:
    twin.set_delay(0.4)
    os.write(port.fd, b"W")
    assert port.read(1, within=0.2) == b""
    twin.set_weight(Decimal(3))  # the reply was weighed when asked, not when delivered
    assert port.read(len(b"\x0201.250\r")) == b"\x0201.250\r"


def test_pty_is_raw_from_the_start(port: Port) -> None:
    iflag, _oflag, _cflag, lflag, *_ = termios.tcgetattr(port.fd)
    assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR)
    assert not lflag & (termios.ECHO | termios.ICANON)


def test_disconnect_and_come_back_behind_the_same_link(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-Toledo-if00"
    link.parent.mkdir()
    with Toledo8217Twin(link, weight=Decimal(1)) as twin:
        first = twin.device_path
        assert os.readlink(link) == first
        port = Port(link)
        try:
            twin.disconnect()
            assert not twin.connected
            assert not link.is_symlink()
            with pytest.raises(OSError, match="Input/output"):  # EIO, as from a pulled adapter
                os.write(port.fd, b"W")
        finally:
            port.close()
        twin.reconnect()
        assert twin.connected
        assert os.readlink(link) == twin.device_path
        port = Port(link)
        try:
            assert port.frames(1) == [b"\x0201.000\r"]
        finally:
            port.close()

        twin.disconnect(0.2)  # back by itself
        give_up_at = time.monotonic() + patience_timeout(3)
        while not twin.connected and time.monotonic() < give_up_at:
            time.sleep(0.02)
        assert twin.connected
        assert link.is_symlink()
    assert not link.is_symlink()  # closing removes the link it owns


def test_operator_commands(twin: Toledo8217Twin, port: Port) -> None:
    assert apply_command(twin, "help") == HELP
    assert apply_command(twin, "weight 2.5") is None
    assert apply_command(twin, "tare 0.5") is None
    status = apply_command(twin, "status")
    assert status is not None
    assert "net: 2.000 kg" in status
    assert port.frames(1) == [b"\x0202.000N\r"]
    apply_command(twin, "overload")
    assert port.frames(1) == [b"\x02?b\r"]  # over capacity, net
    apply_command(twin, "clear")
    with pytest.raises(ValueError, match="unknown"):
        apply_command(twin, "explode")


def test_twin_imports_nothing_of_the_drivers() -> None:
    code = (
        "import sys, simulators.toledo8217; "
        "print(sorted(m for m in sys.modules if m.startswith('device_drivers')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=patience_timeout(30),
        check=True,
    )
    assert result.stdout.strip() == "[]"
