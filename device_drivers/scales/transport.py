"""How bytes get to a scale and back, apart from what they mean.

MT-SICS runs over a serial port (RS-232, USB-CDC) or over a TCP bridge (a serial device
server in front of the indicator); the driver is the same on both, only the transport
differs. A transport knows nothing of lines or replies: it opens, moves bytes and fails with
:class:`OSError` when the other end goes away, and the driver decides what that means.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
from typing import Literal, Protocol, runtime_checkable

import serial

__all__ = ["ByteTransport", "SerialTransport", "TcpTransport"]

Parity = Literal["N", "E", "O"]

_READ_CHUNK = 4096


@runtime_checkable
class ByteTransport(Protocol):
    """A byte pipe to one device; every method may raise :class:`OSError` on failure."""

    @property
    def name(self) -> str:
        """What to call the device's address in logs and status (a path, ``host:port``)."""
        ...

    def open(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes:
        """What has arrived, waiting up to ``timeout`` for the first byte; ``b""`` if none."""
        ...

    def interrupt(self) -> None:
        """Wake a ``read`` blocked in another thread; best effort, never raises."""
        ...

    def close(self) -> None: ...


class SerialTransport:
    """A serial port through pyserial; a pty stands in for one in tests."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: Parity = "N",
        stopbits: int = 1,
        xonxoff: bool = False,
        write_timeout: float = 1.0,
    ) -> None:
        self._path = os.fspath(path)
        self._baudrate = baudrate
        self._bytesize = bytesize
        self._parity = parity
        self._stopbits = stopbits
        self._xonxoff = xonxoff
        self._write_timeout = write_timeout
        self._port: serial.Serial | None = None

    @property
    def name(self) -> str:
        return self._path

    def open(self) -> None:
        self.close()
        try:
            self._port = serial.Serial(
                self._path,
                baudrate=self._baudrate,
                bytesize=self._bytesize,
                parity=self._parity,
                stopbits=self._stopbits,
                xonxoff=self._xonxoff,
                timeout=0,
                write_timeout=self._write_timeout,
                exclusive=True,
            )
        except (serial.SerialException, ValueError, termios.error) as exc:
            # termios.error: a line setting the device cannot take (a pty refuses 7E1);
            # pyserial lets it through, and it is no OSError.
            raise OSError(f"cannot open {self._path}: {exc}") from exc

    def write(self, data: bytes) -> None:
        port = self._require_open()
        try:
            port.write(data)
            port.flush()
        except Exception as exc:  # whatever pyserial throws, the port is unusable
            raise OSError(f"write to {self._path} failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        port = self._require_open()
        try:
            port.timeout = max(timeout, 0.0)
            data: bytes = port.read(1)
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
        except Exception as exc:  # a pulled USB adapter shows up as almost any exception
            raise OSError(f"read from {self._path} failed: {exc}") from exc
        return data

    def interrupt(self) -> None:
        port = self._port
        if port is not None:
            with contextlib.suppress(Exception):
                port.cancel_read()

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(Exception):  # closing a dead port may fail; it is gone
                port.close()

    def _require_open(self) -> serial.Serial:
        if self._port is None:
            raise OSError(f"{self._path} is not open")
        return self._port


class TcpTransport:
    """A TCP connection to a serial device server (or a scale with a network port)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 1.0) -> None:
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._sock: socket.socket | None = None

    @property
    def name(self) -> str:
        return f"{self._host}:{self._port}"

    def open(self) -> None:
        self.close()
        sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
        # Commands are a few bytes each and the reply is awaited: Nagle would only add delay.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self._connect_timeout)
        self._sock = sock

    def write(self, data: bytes) -> None:
        self._require_open().sendall(data)

    def read(self, timeout: float) -> bytes:
        sock = self._require_open()
        ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        data = sock.recv(_READ_CHUNK)
        if not data:
            raise ConnectionResetError(f"{self.name} closed the connection")
        return data

    def interrupt(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _require_open(self) -> socket.socket:
        if self._sock is None:
            raise OSError(f"{self.name} is not connected")
        return self._sock
