"""``jxc sim ...`` run as a real process, as a user or a script runs it, with bounded waits.

Output lines are read by a thread into a queue, so a test waiting for a line it never gets
fails after its timeout instead of hanging in ``readline``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from tests.patience import patience_timeout
from tests.ports import free_port

__all__ = ["PtyPort", "SimProcess", "free_port", "recv_until"]


class SimProcess:
    """One ``python -m jxc sim ARGS`` process with piped stdin, stdout and stderr."""

    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jxc", "sim", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        self._out: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.kill()

    @staticmethod
    def _pump(stream: IO[str], sink: queue.Queue[str | None]) -> None:
        for line in stream:
            sink.put(line.rstrip("\n"))
        sink.put(None)

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            self._err.append(line)

    def line(self, timeout: float = 30.0) -> str:
        """The next stdout line; fails on a timeout or on the end of output."""
        try:
            line = self._out.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"no output line within {timeout} s from jxc sim {' '.join(self.args)}; "
                f"stderr: {self.stderr}"
            ) from None
        if line is None:
            raise AssertionError(
                f"jxc sim {' '.join(self.args)} ended its output (exit {self.proc.poll()}); "
                f"stderr: {self.stderr}"
            )
        return line

    def line_starting(self, prefix: str, timeout: float = 10.0) -> str:
        """Skip lines until one starts with ``prefix``."""
        give_up_at = time.monotonic() + timeout
        while True:
            line = self.line(max(give_up_at - time.monotonic(), 0.01))
            if line.startswith(prefix):
                return line

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_stderr(self, fragment: str, timeout: float = 10.0) -> str:
        timeout = patience_timeout(timeout)
        give_up_at = time.monotonic() + timeout
        while fragment not in self.stderr:
            if time.monotonic() > give_up_at:
                raise AssertionError(
                    f"{fragment!r} not on stderr within {timeout} s: {self.stderr}"
                )
            time.sleep(0.02)
        return self.stderr

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, and the exit status (failing if it does not stop in time)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout=patience_timeout(timeout))
        for reader in self._readers:
            reader.join(timeout=patience_timeout(5))
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=patience_timeout(10))
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class PtyPort:
    """The driver's end of a pty, raw bytes in and out, without any driver code."""

    def __init__(self, path: str | Path) -> None:
        import termios  # noqa: PLC0415
        import tty  # noqa: PLC0415

        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *_exc: object) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_until(self, end: bytes, timeout: float = 5.0) -> bytes:
        """Bytes up to and including ``end`` (or what came before the timeout)."""
        data = b""
        give_up_at = time.monotonic() + timeout
        while end not in data:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                break
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(self.fd, 4096)
                if not chunk:
                    break
                data += chunk
        return data


def recv_until(sock: socket.socket, end: bytes, count: int = 1, timeout: float = 5.0) -> bytes:
    """Bytes from ``sock`` until ``end`` was seen ``count`` times (or the timeout)."""
    data = b""
    give_up_at = time.monotonic() + timeout
    while data.count(end) < count:
        remaining = give_up_at - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data
