"""How bytes reach a label printer: raw TCP (port 9100) or a serial line.

Only bytes move here; what they mean is :mod:`device_drivers.printers.zpl` and
:mod:`device_drivers.printers.host_status`, so the same driver runs over either wire. Every
failure comes out as :class:`DeviceUnavailableError`, the one error the driver reconnects on.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from typing import Protocol

import serial

from device_drivers.errors import DeviceUnavailableError

__all__ = ["SerialTransport", "TcpTransport", "Transport"]


class Transport(Protocol):
    """One open-able link to one printer. Not thread-safe: the driver serialises use."""

    @property
    def description(self) -> str: ...

    def open(self) -> None: ...

    def send(self, data: bytes) -> None:
        """Hand over all of ``data`` or raise; never a silent partial write."""

    def receive(self, timeout: float) -> bytes:
        """What arrives within ``timeout`` (``b""`` if nothing); raise if the link is gone."""

    def discard_input(self) -> None:
        """Drop whatever already arrived, so a late answer is not read as the next one."""

    def close(self) -> None: ...


class TcpTransport:
    """The printer's raw port. ``sendall`` with a timeout, so a printer whose buffer is full
    (it stops reading) shows up as a failure instead of a hang."""

    def __init__(
        self,
        host: str,
        port: int = 9100,
        *,
        connect_timeout: float = 2.0,
        write_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self._sock: socket.socket | None = None

    @property
    def description(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    def open(self) -> None:
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise DeviceUnavailableError(f"cannot connect to {self.description}: {exc}") from exc
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sock = sock

    def send(self, data: bytes) -> None:
        sock = self._require()
        try:
            sock.settimeout(self.write_timeout)
            sock.sendall(data)
        except OSError as exc:  # socket.timeout is an OSError too
            raise DeviceUnavailableError(f"sending to {self.description} failed: {exc}") from exc

    def receive(self, timeout: float) -> bytes:
        sock = self._require()
        try:
            ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            chunk = sock.recv(4096)
        except (OSError, ValueError) as exc:
            raise DeviceUnavailableError(f"reading from {self.description} failed: {exc}") from exc
        if not chunk:
            raise DeviceUnavailableError(f"{self.description} closed the connection")
        return chunk

    def discard_input(self) -> None:
        while self.receive(0.0):
            pass

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise DeviceUnavailableError(f"{self.description} is not connected")
        return self._sock


class SerialTransport:
    """A printer on RS-232 or USB serial; name the port by a stable path (``/dev/serial/by-id``)."""

    def __init__(
        self,
        port: str | os.PathLike[str],
        baudrate: int = 9600,
        *,
        write_timeout: float = 5.0,
    ) -> None:
        self.port = os.fspath(port)
        self.baudrate = baudrate
        self.write_timeout = write_timeout
        self._serial: serial.Serial | None = None

    @property
    def description(self) -> str:
        return f"serial:{self.port}@{self.baudrate}"

    def open(self) -> None:
        self.close()
        try:
            self._serial = serial.Serial(
                self.port,
                baudrate=self.baudrate,
                timeout=0,
                write_timeout=self.write_timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceUnavailableError(f"cannot open {self.description}: {exc}") from exc

    def send(self, data: bytes) -> None:
        port = self._require()
        try:
            written = port.write(data)
            port.flush()
        except Exception as exc:  # whatever the port throws, the printer is gone
            raise DeviceUnavailableError(f"writing to {self.description} failed: {exc}") from exc
        if written is not None and written != len(data):
            raise DeviceUnavailableError(f"{self.description} took {written} of {len(data)} bytes")

    def receive(self, timeout: float) -> bytes:
        port = self._require()
        try:
            port.timeout = max(timeout, 0.0)
            chunk = port.read(1)
            if chunk and port.in_waiting:
                chunk += port.read(port.in_waiting)
        except Exception as exc:  # whatever the port throws, the printer is gone
            raise DeviceUnavailableError(f"reading {self.description} failed: {exc}") from exc
        return bytes(chunk)

    def discard_input(self) -> None:
        port = self._require()
        try:
            port.reset_input_buffer()
        except Exception as exc:  # whatever the port throws, the printer is gone
            raise DeviceUnavailableError(f"{self.description}: {exc}") from exc

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()

    def _require(self) -> serial.Serial:
        if self._serial is None:
            raise DeviceUnavailableError(f"{self.description} is not open")
        return self._serial
