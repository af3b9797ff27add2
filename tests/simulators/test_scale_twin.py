"""The MT-SICS scale twin on its own: what a client of its pty or TCP port sees."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from simulators.scale import GARBAGE, MtSicsScaleTwin
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

    def __init__(self, fd: int, sock: socket.socket | None = None) -> None:
        self.fd = fd
        self.sock = sock
        self.pending = b""

    @classmethod
    def pty(cls, path: str | Path) -> Port:
        return cls(os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))

    @classmethod
    def tcp(cls, address: tuple[str, int]) -> Port:
        sock = socket.create_connection(address, timeout=patience_timeout(2))
        sock.setblocking(False)
        return cls(sock.fileno(), sock)

    def send(self, data: bytes) -> None:
        if self.sock is not None:
            self.sock.sendall(data)
        else:
            os.write(self.fd, data)

    def ask(self, command: str, lines: int = 1, within: float = 2.0) -> list[bytes]:
        self.send(command.encode() + b"\r\n")
        return self.lines(lines, within)

    def lines(self, count: int, within: float = 2.0) -> list[bytes]:
        give_up_at = time.monotonic() + within
        while self.pending.count(b"\r\n") < count:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                break
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = self.read_some()
                if not chunk:
                    break
                self.pending += chunk
        out: list[bytes] = []
        while len(out) < count:
            line, end, rest = self.pending.partition(b"\r\n")
            if not end:
                break
            out.append(line + end)
            self.pending = rest
        return out

    def silent_for(self, seconds: float) -> bytes:
        """Whatever arrives within ``seconds`` (expected: nothing)."""
        got = b""
        give_up_at = time.monotonic() + seconds
        while (remaining := give_up_at - time.monotonic()) > 0:
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = self.read_some()
                if not chunk:
                    break
                got += chunk
        return self.pending + got

    def read_some(self) -> bytes:
        try:
            if self.sock is not None:
                return self.sock.recv(4096)
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""
        except OSError:
            return b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        else:
            os.close(self.fd)


@pytest.fixture(params=["pty", "tcp"])
def port_and_twin(request: pytest.FixtureRequest) -> Iterator[tuple[Port, MtSicsScaleTwin]]:
    if request.param == "pty":
        twin = MtSicsScaleTwin(weight=Decimal("1234.5"), stability_timeout=0.25)
        assert twin.device_path is not None
        port = Port.pty(twin.device_path)
    else:
        twin = MtSicsScaleTwin(
            pty=False, tcp_port=0, weight=Decimal("1234.5"), stability_timeout=0.25
        )
        assert twin.tcp_address is not None
        port = Port.tcp(twin.tcp_address)
    yield port, twin
    port.close()
    twin.close()


@pytest.fixture
def port(port_and_twin: tuple[Port, MtSicsScaleTwin]) -> Port:
    return port_and_twin[0]


@pytest.fixture
def twin(port_and_twin: tuple[Port, MtSicsScaleTwin]) -> MtSicsScaleTwin:
    return port_and_twin[1]


# -- the commands ----------------------------------------------------------------------


def test_weight_replies_are_right_aligned_with_unit_and_crlf(port: Port) -> None:
    assert port.ask("SI") == [b"S S    1234.50 g\r\n"]
    assert port.ask("S") == [b"S S    1234.50 g\r\n"]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("I4", b'I4 A "B912345678"\r\n'),
        ("I2", b'I2 A "JXC-TWIN 5100 g"\r\n'),
        ("TA", b"TA A       0.00 g\r\n"),
        ("TAC", b"TAC A\r\n"),
        ("@", b'I4 A "B912345678"\r\n'),
        ("XYZ", b"ES\r\n"),
        ("si", b"ES\r\n"),  # commands are upper case
        ("SI 1", b"EL\r\n"),
        ("TA 12", b"EL\r\n"),
        ("TA 12.00 kg", b"TA L\r\n"),  # not the display unit
        ("TA 12.001 g", b"TA L\r\n"),  # finer than the readability
        ("TA 9999 g", b"TA L\r\n"),  # above capacity
    ],
)
def test_replies_to_each_command(port: Port, command: str, reply: bytes) -> None:
    assert port.ask(command) == [reply]


def test_i0_lists_every_command_with_b_lines_and_a_last_line(port: Port) -> None:
    lines = port.ask("I0", lines=13)
    assert lines[0] == b'I0 B 0 "@"\r\n'
    assert lines[-1] == b'I0 A 1 "ZI"\r\n'
    assert all(line.startswith(b"I0 B ") for line in lines[:-1])
    names = [re.search(rb'"(.*)"', line)[1] for line in lines]  # type: ignore[index]
    assert sorted(names) == sorted(
        n.encode()
        for n in ("@", "I0", "I2", "I4", "S", "SI", "SIR", "Z", "T", "TA", "TAC", "TI", "ZI")
    )


def test_a_bare_lf_or_a_damaged_byte_is_refused(port: Port) -> None:
    port.send(b"SI\n")
    assert port.lines(1) == [b"ES\r\n"]
    port.send(b"S\xc9\r\n")
    assert port.lines(1) == [b"ET\r\n"]


def test_tare_and_zero_change_the_state_as_a_scale_does(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.set_weight(Decimal(300))
    assert port.ask("T") == [b"T S     300.00 g\r\n"]
    twin.set_weight(Decimal(1000))
    assert port.ask("SI") == [b"S S     700.00 g\r\n"]
    assert port.ask("TA") == [b"TA A     300.00 g\r\n"]
    assert port.ask("TA 250.00 g") == [b"TA A     250.00 g\r\n"]
    assert port.ask("SI") == [b"S S     750.00 g\r\n"]
    assert port.ask("TAC") == [b"TAC A\r\n"]
    assert port.ask("SI") == [b"S S    1000.00 g\r\n"]
    assert port.ask("Z") == [b"Z +\r\n"]  # a kilogram is a load, not zero drift
    twin.set_weight(Decimal("-0.5"))
    assert port.ask("Z") == [b"Z A\r\n"]
    assert port.ask("SI") == [b"S S       0.00 g\r\n"]
    twin.set_weight(Decimal(10))
    assert port.ask("TI") == [b"TI S      10.50 g\r\n"]
    assert port.ask("ZI") == [b"ZI S\r\n"]  # zeroing drops the tare too
    assert port.ask("TA") == [b"TA A       0.00 g\r\n"]
    assert twin.net == Decimal("0.00")


def test_reset_drops_the_tare_but_does_not_zero(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.set_weight(Decimal(20))
    port.ask("T")
    assert port.ask("@") == [b'I4 A "B912345678"\r\n']
    assert port.ask("SI") == [b"S S      20.00 g\r\n"]


def test_units_and_readability_follow_the_settings() -> None:
    with MtSicsScaleTwin(weight=Decimal("1.25"), unit="kg", decimals=3) as twin:
        assert twin.device_path is not None
        port = Port.pty(twin.device_path)
        try:
            assert port.ask("SI") == [b"S S      1.250 kg\r\n"]
            twin.set_weight(Decimal(1), "lb")
            assert port.ask("SI") == [b"S S      0.454 kg\r\n"]
            twin.set_weight(Decimal("-0.0001"), "kg")
            assert port.ask("SI") == [b"S S      0.000 kg\r\n"]  # never "-0.000"
        finally:
            port.close()


# -- motion and range ------------------------------------------------------------------


def test_wobble_shows_dynamic_values_then_holds(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.wobble(0.4)
    moving = [port.ask("SI")[0] for _ in range(5)]
    assert all(line.startswith(b"S D ") for line in moving)
    assert b"S D    1234.50 g\r\n" not in moving
    assert len(set(moving)) > 1
    time.sleep(0.45)
    assert port.ask("SI") == [b"S S    1234.50 g\r\n"]


def test_s_waits_for_the_load_to_settle(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.set_weight(Decimal(900), settle=0.15)
    started = time.monotonic()
    assert port.ask("S") == [b"S S     900.00 g\r\n"]
    assert 0.12 < time.monotonic() - started < 0.25  # before the device's own patience ends


def test_s_gives_up_with_i_when_the_load_keeps_moving(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.wobble(5.0)
    started = time.monotonic()
    assert port.ask("S") == [b"S I\r\n"]  # stability_timeout is 0.25 s here
    assert 0.22 < time.monotonic() - started < 0.6
    assert port.ask("Z") == [b"Z I\r\n"]
    assert port.ask("T") == [b"T I\r\n"]


def test_commands_are_answered_in_order_behind_a_waiting_one(
    port: Port, twin: MtSicsScaleTwin
) -> None:
    twin.wobble(0.15)
    port.send(b"S\r\nI4\r\n")
    assert port.lines(2) == [b"S S    1234.50 g\r\n", b'I4 A "B912345678"\r\n']


def test_reset_cancels_a_waiting_command(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.wobble(5.0)
    port.send(b"S\r\n@\r\n")
    assert port.lines(1, within=0.2) == [b'I4 A "B912345678"\r\n']
    assert port.silent_for(0.35) == b""  # the S was dropped, not answered "S I" later


@pytest.mark.parametrize(
    ("fault", "replies"),
    [
        ("overload", [b"S +", b"S +", b"T +", b"Z +", b"ZI +"]),
        ("underload", [b"S -", b"S -", b"T -", b"Z -", b"ZI -"]),
        ("busy", [b"S I", b"S I", b"T I", b"Z I", b"ZI I"]),
    ],
)
def test_forced_states(port: Port, twin: MtSicsScaleTwin, fault: str, replies: list[bytes]) -> None:
    getattr(twin, fault)()
    got = [port.ask(c)[0] for c in ("SI", "S", "T", "Z", "ZI")]
    assert got == [r + b"\r\n" for r in replies]
    twin.clear_faults()
    assert port.ask("SI") == [b"S S    1234.50 g\r\n"]


def test_capacity_and_underload_follow_the_load(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.set_weight(Decimal("5100.01"))
    assert port.ask("SI") == [b"S +\r\n"]
    twin.set_weight(Decimal(-150))
    assert port.ask("SI") == [b"S -\r\n"]


def test_sir_repeats_until_the_next_command(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.sir_interval = 0.05
    lines = port.ask("SIR", lines=4, within=1.0)
    assert lines == [b"S S    1234.50 g\r\n"] * 4
    port.send(b"@\r\n")
    time.sleep(0.1)
    tail = port.silent_for(0.1).split(b"\r\n")
    assert b'I4 A "B912345678"' in tail
    assert port.silent_for(0.3) == b""


# -- wire faults -----------------------------------------------------------------------


def test_general_errors_on_command(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.reply_error("ES")
    twin.reply_error("ET")
    twin.reply_error("EL")
    assert [port.ask("SI")[0] for _ in range(4)] == [
        b"ES\r\n",
        b"ET\r\n",
        b"EL\r\n",
        b"S S    1234.50 g\r\n",
    ]


def test_no_reply_garbage_half_and_delay(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.no_reply(1)
    port.send(b"SI\r\n")
    assert port.silent_for(0.2) == b""
    twin.garble_replies(1)
    assert port.ask("SI") == [GARBAGE + b"\r\n"]
    twin.cut_replies(1)
    port.send(b"SI\r\n")
    assert port.silent_for(0.2) == b"S S    1"  # half of it, no CR LF
    port.pending = b""
    twin.set_delay(0.3)
    started = time.monotonic()
    assert port.ask("SI") == [b"S S    1234.50 g\r\n"]
    assert time.monotonic() - started >= 0.28
    twin.send_garbage()
    assert port.lines(1) == [GARBAGE + b"\r\n"]
    assert not {0x0D, 0x0A} & set(GARBAGE)


def test_a_delayed_reply_carries_the_weight_from_when_it_was_asked(
    port: Port, twin: MtSicsScaleTwin
) -> None:
    twin.set_delay(0.3)
    port.send(b"SI\r\n")
    time.sleep(0.05)
    twin.set_weight(Decimal(1))
    twin.set_delay(0.0)
    port.send(b"SI\r\n")
    assert port.lines(2) == [b"S S    1234.50 g\r\n", b"S S       1.00 g\r\n"]


def test_mute_until_cleared(port: Port, twin: MtSicsScaleTwin) -> None:
    twin.no_reply(None)
    port.send(b"SI\r\nI4\r\n@\r\n")
    assert port.silent_for(0.2) == b""
    twin.clear_faults()
    assert port.ask("SI") == [b"S S    1234.50 g\r\n"]


# -- the pty and the TCP port ----------------------------------------------------------


def test_pty_is_raw_from_the_start() -> None:
    with MtSicsScaleTwin() as twin:
        assert twin.device_path is not None
        fd = os.open(twin.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            iflag, _oflag, _cflag, lflag, *_ = termios.tcgetattr(fd)
            assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR)
            assert not lflag & (termios.ECHO | termios.ICANON)
        finally:
            os.close(fd)


def test_pty_disconnect_and_back_behind_the_same_link(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-Mettler_Toledo-if00"
    link.parent.mkdir()
    with MtSicsScaleTwin(link) as twin:
        first = twin.device_path
        assert first is not None
        assert os.readlink(link) == first
        port = Port.pty(link)
        try:
            assert port.ask("I4") == [b'I4 A "B912345678"\r\n']
            twin.disconnect(0.3)
            assert not link.exists()
            assert select.select([port.fd], [], [], 1.0)[0]  # hang-up shows as readable
            assert port.read_some() == b""  # ... then EOF or EIO: the cable is out
            assert not twin.connected
        finally:
            port.close()
        time.sleep(0.5)
        assert twin.connected
        assert os.readlink(link) == twin.device_path
        port = Port.pty(link)
        try:
            assert port.ask("SI") == [b"S S       0.00 g\r\n"]
        finally:
            port.close()
    assert not link.is_symlink()


def test_tcp_disconnect_drops_clients_and_refuses_until_back() -> None:
    with MtSicsScaleTwin(pty=False, tcp_port=0) as twin:
        address = twin.tcp_address
        assert address is not None
        port = Port.tcp(address)
        try:
            assert port.ask("I4") == [b'I4 A "B912345678"\r\n']
            twin.disconnect()
            assert select.select([port.fd], [], [], 1.0)[0]
            assert port.read_some() == b""
        finally:
            port.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=patience_timeout(1)).close()
        twin.reconnect()
        assert twin.tcp_address == address
        port = Port.tcp(address)
        try:
            assert port.ask("I4") == [b'I4 A "B912345678"\r\n']
        finally:
            port.close()


def test_pty_and_tcp_at_once_share_one_platform(tmp_path: Path) -> None:
    with MtSicsScaleTwin(tmp_path / "scale", tcp_port=0, weight=Decimal(7)) as twin:
        assert twin.tcp_address is not None
        serial, network = Port.pty(tmp_path / "scale"), Port.tcp(twin.tcp_address)
        try:
            assert serial.ask("T") == [b"T S       7.00 g\r\n"]
            assert network.ask("SI") == [b"S S       0.00 g\r\n"]
        finally:
            serial.close()
            network.close()


def test_close_is_idempotent_and_stops_the_thread() -> None:
    twin = MtSicsScaleTwin(pty=False, tcp_port=0)
    twin.close()
    twin.close()


# -- the command line ------------------------------------------------------------------


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from simulators.cli import app; app()", "scale", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(cli: subprocess.Popen[str]) -> None:
    if cli.poll() is None:
        cli.kill()
        cli.wait()
    for stream in (cli.stdin, cli.stdout, cli.stderr):
        if stream is not None:
            stream.close()


def test_cli_over_tcp_takes_typed_commands_and_stops_on_sigterm() -> None:
    cli = _start_cli("--tcp", "0", "--weight", "1.250", "--unit", "kg", "--decimals", "3")
    try:
        assert cli.stdout is not None
        assert cli.stdin is not None
        assert cli.stderr is not None
        first = cli.stdout.readline()
        assert first.startswith("device: tcp://127.0.0.1:"), first
        host, port_number = first.removeprefix("device: tcp://").strip().split(":")
        port = Port.tcp((host, int(port_number)))
        try:
            assert port.ask("SI") == [b"S S      1.250 kg\r\n"]
            cli.stdin.write("weight 2 kg\n")
            cli.stdin.flush()
            assert wait_for(port, "SI", b"S S      2.000 kg\r\n")
            cli.stdin.write("overload\n")
            cli.stdin.flush()
            assert wait_for(port, "SI", b"S +\r\n")
            cli.stdin.write("clear\nwobble 0.3\nbogus\n")
            cli.stdin.close()  # EOF: the device must stay up regardless
            assert wait_for(port, "SI", b"S S      2.000 kg\r\n", within=2.0)
            time.sleep(0.1)
            assert cli.poll() is None
        finally:
            port.close()
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=patience_timeout(5)) == 0
        assert "not understood: 'bogus'" in cli.stderr.read()
    finally:
        _stop(cli)


def test_cli_on_a_pty_link_removes_it_on_exit(tmp_path: Path) -> None:
    link = tmp_path / "scale"
    cli = _start_cli("--link", str(link))
    try:
        assert cli.stdout is not None
        device = cli.stdout.readline()
        assert device.startswith("device: /dev/pts/")
        assert cli.stdout.readline() == f"link: {link}\n"
        assert os.readlink(link) == device.removeprefix("device: ").strip()
        port = Port.pty(link)
        try:
            assert port.ask("SI") == [b"S S       0.00 g\r\n"]
        finally:
            port.close()
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=patience_timeout(5)) == 0
        assert not link.is_symlink()
    finally:
        _stop(cli)


def wait_for(port: Port, command: str, expected: bytes, within: float = 3.0) -> bool:
    """Ask until the answer is ``expected``: the CLI applies stdin lines asynchronously."""
    give_up_at = time.monotonic() + patience_timeout(within)
    while time.monotonic() < give_up_at:
        if port.ask(command) == [expected]:
            return True
        time.sleep(0.05)
    return False


def test_jxc_sim_scale_is_registered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jxc", "sim", "scale", "--help"],
        capture_output=True,
        text=True,
        timeout=patience_timeout(30),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--tcp" in result.stdout
    assert "--link" in result.stdout
