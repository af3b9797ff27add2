"""The scanner twin on its own: what a reader of its pty sees, byte for byte."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.scanner import GARBAGE, HALF_LINE, ScannerTwin
from tests.patience import patience_timeout


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    fds_before = set(os.listdir("/proc/self/fd"))
    yield
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, f"leaked file descriptors: {sorted(leaked)}"


def open_port(path: str | Path) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


def read_until(fd: int, expected_size: int, within: float = 3.0) -> bytes:
    received = b""
    give_up_at = time.monotonic() + within
    while len(received) < expected_size:
        remaining = give_up_at - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            received += os.read(fd, 4096)
    return received


def test_send_puts_symbology_data_and_terminator_on_the_wire() -> None:
    with ScannerTwin() as twin:
        port = open_port(twin.device_path)
        try:
            twin.send("0109506000134352\x1d10LOT", symbology="]C1")
            twin.send("9506000134352")
            expected = b"]C10109506000134352\x1d10LOT\r9506000134352\r"
            assert read_until(port, len(expected)) == expected
        finally:
            os.close(port)


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_terminator_arrives_untranslated(terminator: bytes) -> None:
    with ScannerTwin(terminator=terminator) as twin:
        port = open_port(twin.device_path)
        try:
            twin.send("A")
            assert read_until(port, 1 + len(terminator)) == b"A" + terminator
        finally:
            os.close(port)


def test_pty_is_raw_from_the_start() -> None:
    with ScannerTwin() as twin:
        port = open_port(twin.device_path)
        try:
            iflag, _oflag, _cflag, lflag, *_ = termios.tcgetattr(port)
            assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR)
            assert not lflag & (termios.ECHO | termios.ICANON)
        finally:
            os.close(port)


def test_faults_on_command() -> None:
    with ScannerTwin() as twin:
        port = open_port(twin.device_path)
        try:
            twin.send_garbage()
            twin.send_half_line()
            twin.send_raw(b"\x00\x01")
            expected = GARBAGE + b"\r" + HALF_LINE + b"\x00\x01"
            assert read_until(port, len(expected)) == expected
            assert not set(GARBAGE) & {0x0D, 0x0A, 0x1D, ord("|")}
            assert not set(GARBAGE) <= set(range(0x20, 0x7F))
        finally:
            os.close(port)


def test_pty_survives_the_reader_closing_and_reopening() -> None:
    with ScannerTwin() as twin:
        os.close(open_port(twin.device_path))
        port = open_port(twin.device_path)
        try:
            twin.send("AGAIN")
            assert read_until(port, 6) == b"AGAIN\r"
        finally:
            os.close(port)


def test_close_unplugs_the_reader() -> None:
    twin = ScannerTwin()
    port = open_port(twin.device_path)
    try:
        twin.close()
        ready, _, _ = select.select([port], [], [], 1.0)
        assert ready  # hang-up shows as readable ...
        try:  # ... and then yields nothing, like a pulled USB cable
            data = os.read(port, 10)
        except OSError:  # EIO is the other way Linux says "gone"
            data = b""
        assert data == b""
        with pytest.raises(ValueError, match="closed"):
            twin.send("LATE")
        twin.close()  # twice is harmless
    finally:
        os.close(port)


def test_link_is_created_replaced_and_removed_only_by_its_owner(tmp_path: Path) -> None:
    link = tmp_path / "by-id" / "usb-Scanner-if00"
    link.parent.mkdir()
    first = ScannerTwin(link=link)
    assert os.readlink(link) == first.device_path
    second = ScannerTwin(link=link)
    assert os.readlink(link) == second.device_path
    first.close()
    assert os.readlink(link) == second.device_path  # not the first twin's to remove
    second.close()
    assert not link.is_symlink()
    assert list(link.parent.iterdir()) == []


def test_send_gives_up_when_nobody_reads() -> None:
    with ScannerTwin(write_timeout=0.2) as twin:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            twin.send_raw(b"X" * 1_000_000)
        assert time.monotonic() - started < 2.0


def test_concurrent_sends_never_interleave() -> None:
    with ScannerTwin() as twin:
        port = open_port(twin.device_path)
        try:
            lines = [f"T{t}-{'ABCDEFGH' * 8}-{n:02d}" for t in range(4) for n in range(20)]

            def sender(t: int) -> None:
                for line in lines[t * 20 : (t + 1) * 20]:
                    twin.send(line)

            threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
            for thread in threads:
                thread.start()
            expected_size = sum(len(line) + 1 for line in lines)
            received = read_until(port, expected_size)
            for thread in threads:
                thread.join(timeout=patience_timeout(5))
            assert sorted(received.decode().split("\r")[:-1]) == sorted(lines)
        finally:
            os.close(port)


# -- the command line -----------------------------------------------------------------


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from simulators.cli import app; app()", "scanner", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_sends_script_then_stdin_and_cleans_up_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "scanner"
    script = tmp_path / "reads.txt"
    script.write_text("0109506000134352<GS>10LOT1\n\n!garbage\n!raw 41 42 0d\n")
    cli = _start_cli("--link", str(link), "--symbology", "]C1", "--script", str(script))
    try:
        assert cli.stdout is not None
        assert cli.stdin is not None
        device_line = cli.stdout.readline()
        assert device_line.startswith("device: /dev/pts/")
        assert cli.stdout.readline() == f"link: {link}\n"
        assert os.readlink(link) == device_line.removeprefix("device: ").strip()

        port = open_port(link)
        try:
            cli.stdin.write("HELLO\n!half\n")
            cli.stdin.close()  # EOF: the pty must stay open regardless
            expected = (
                b"]C10109506000134352\x1d10LOT1\r" + GARBAGE + b"\rAB\r" + b"]C1HELLO\r" + HALF_LINE
            )
            assert read_until(port, len(expected)) == expected
            time.sleep(0.2)
            assert cli.poll() is None
        finally:
            os.close(port)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(timeout=patience_timeout(5)) == 0
        assert not link.is_symlink()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for stream in (cli.stdout, cli.stderr):
            if stream is not None:
                stream.close()


def test_cli_reports_a_bad_raw_line_and_carries_on() -> None:
    cli = _start_cli("--terminator", "LF")
    try:
        assert cli.stdout is not None
        assert cli.stdin is not None
        assert cli.stderr is not None
        device = cli.stdout.readline().removeprefix("device: ").strip()
        port = open_port(device)
        try:
            cli.stdin.write("!raw zz\nOK\n")
            cli.stdin.close()
            assert read_until(port, 3) == b"OK\n"
        finally:
            os.close(port)
        cli.send_signal(signal.SIGINT)
        assert cli.wait(timeout=patience_timeout(5)) == 0
        assert "not understood: '!raw zz'" in cli.stderr.read()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
        for stream in (cli.stdout, cli.stderr):
            if stream is not None:
                stream.close()


def test_jxc_sim_scanner_is_registered() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jxc", "sim", "scanner", "--help"],
        capture_output=True,
        text=True,
        timeout=patience_timeout(30),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--link" in result.stdout
