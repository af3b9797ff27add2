"""How bytes get to a device and back, apart from what they mean: one interface for every driver.

Scales, label printers and serial scanners all talk to their device over a serial line
(RS-232, USB-CDC, a pty in tests) or a TCP connection (a printer's port 9100, a serial
device server in front of a scale). A transport knows nothing of lines, replies or
commands: it opens, moves bytes, and fails with :class:`TransportError` when the other end
is missing or goes away; the driver decides what that means. The codecs stay pure functions
over bytes, and a driver runs over either wire (or :func:`loopback_pair` in unit tests).

:class:`TransportError` is both an :class:`OSError` (what the scale drivers catch, and what
:func:`~device_drivers.port_errors.port_error_text` reads the cause from) and a
:class:`~device_drivers.errors.DeviceUnavailableError` (what the printer drivers reconnect
on). The original error stays chained, so the engineer's wording of the cause is not lost.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol, runtime_checkable

import serial

from device_drivers.errors import DeviceUnavailableError
from device_drivers.port_errors import port_error_text

__all__ = [
    "STALE_INPUT_LIMIT",
    "ByteTransport",
    "LoopbackTransport",
    "Parity",
    "SerialTransport",
    "StaleInputHook",
    "TcpTransport",
    "TransportError",
    "loopback_pair",
    "read_reply",
]

Parity = Literal["N", "E", "O"]

StaleInputHook = Callable[[bytes, bool], None]
"""Called with ``(stale bytes, truncated)`` when a serial port is opened with input waiting."""

STALE_INPUT_LIMIT = 65536
"""At most this much stale input is read (to hand to the hook) at open; the rest is
flushed unread, and ``truncated`` says the amount is a lower bound."""

_READ_CHUNK = 4096


class TransportError(DeviceUnavailableError, OSError):
    """The device cannot be reached through this transport now; it may come back."""


@runtime_checkable
class ByteTransport(Protocol):
    """A byte pipe to one device. Not thread-safe, except ``interrupt`` (and ``close``
    after it): the driver serialises use of one transport."""

    @property
    def name(self) -> str:
        """The device's address in logs and status: a path, or ``host:port``."""
        ...

    def open(self) -> None:
        """(Re)connect; whatever an earlier connection left unread is gone."""
        ...

    def write(self, data: bytes) -> None:
        """Hand over all of ``data`` or raise; never a silent partial write."""
        ...

    def read(self, timeout: float) -> bytes:
        """What has arrived, waiting up to ``timeout`` for the first byte; ``b""`` if none."""
        ...

    def discard_input(self) -> None:
        """Drop what already arrived, so a late answer is not read as the next one."""
        ...

    def interrupt(self) -> None:
        """Wake a ``read`` blocked in another thread; best effort, never raises."""
        ...

    def close(self) -> None:
        """Release the link; never raises, and may be called when not open."""
        ...


def read_reply(
    transport: ByteTransport, complete: Callable[[bytes], int | None], timeout: float
) -> tuple[bytes | None, bytes]:
    """Read until ``complete(buffer)`` gives the reply's length, for up to ``timeout``.

    Returns ``(reply, everything received)``; ``reply`` is ``None`` when the time ran out
    first (the caller decides whether half an answer poisons the link).
    """
    buffer = b""
    give_up_at = time.monotonic() + max(timeout, 0.0)
    while (length := complete(buffer)) is None:
        remaining = give_up_at - time.monotonic()
        if remaining <= 0:
            return None, buffer
        buffer += transport.read(remaining)
    return buffer[:length], buffer


class _PortKeepingStaleInput(serial.Serial):
    """A pyserial port that reads what waited in the input buffer before open flushes it.

    pyserial's POSIX ``open()`` configures the port and then flushes its input; this is the
    one place the stale bytes can still be seen. Other platforms never call the hook, and
    see no stale input.
    """

    stale_input = b""
    stale_input_truncated = False

    def _reset_input_buffer(self) -> None:
        if not self.is_open and self.fd is not None:  # inside open(), before the flush
            chunks: list[bytes] = []
            size = 0
            with contextlib.suppress(OSError):  # EAGAIN: nothing more waits; EIO: no device
                while size <= STALE_INPUT_LIMIT and (chunk := os.read(self.fd, _READ_CHUNK)):
                    chunks.append(chunk)
                    size += len(chunk)
            self.stale_input = b"".join(chunks)
            self.stale_input_truncated = size > STALE_INPUT_LIMIT
        serial.Serial._reset_input_buffer(self)  # type: ignore[attr-defined]


class SerialTransport:
    """A serial port through pyserial; a pty stands in for one in tests.

    Opening flushes what the device sent while nobody read it (a line whose time is unknown
    must not be taken as new). With ``on_stale_input``, those bytes are handed to the hook
    first, so a scanner can say which cartons to scan again instead of losing them silently.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: Parity = "N",
        stopbits: int = 1,
        xonxoff: bool = False,
        write_timeout: float = 5.0,
        on_stale_input: StaleInputHook | None = None,
    ) -> None:
        self._path = os.fspath(path)
        self._baudrate = baudrate
        self._bytesize = bytesize
        self._parity = parity
        self._stopbits = stopbits
        self._xonxoff = xonxoff
        self._write_timeout = write_timeout
        self._on_stale_input = on_stale_input
        self._port: serial.Serial | None = None

    @property
    def name(self) -> str:
        return self._path

    def open(self) -> None:
        self.close()
        port_class = serial.Serial if self._on_stale_input is None else _PortKeepingStaleInput
        try:
            port = port_class(
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
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # termios.error: a line setting the device cannot take (a pty refuses 7E1);
            # pyserial lets it through, and it is no OSError.
            raise TransportError(f"cannot open {self._path}: {port_error_text(exc)}") from exc
        self._port = port
        if isinstance(port, _PortKeepingStaleInput) and port.stale_input:
            assert self._on_stale_input is not None
            self._on_stale_input(port.stale_input, port.stale_input_truncated)

    def write(self, data: bytes) -> None:
        port = self._require_open()
        try:
            written = port.write(data)
            port.flush()
        except Exception as exc:  # whatever pyserial throws, the port is unusable
            raise TransportError(f"write to {self._path} failed: {port_error_text(exc)}") from exc
        if written is not None and written != len(data):
            raise TransportError(f"{self._path} took {written} of {len(data)} bytes")

    def read(self, timeout: float) -> bytes:
        port = self._require_open()
        try:
            port.timeout = max(timeout, 0.0)
            data = bytes(port.read(1))
            if data:
                waiting = port.in_waiting
                if waiting:
                    data += port.read(waiting)
        except Exception as exc:  # a pulled USB adapter shows up as almost any exception
            raise TransportError(f"read from {self._path} failed: {port_error_text(exc)}") from exc
        return data

    def discard_input(self) -> None:
        port = self._require_open()
        try:
            port.reset_input_buffer()
        except Exception as exc:  # whatever pyserial throws, the port is unusable
            raise TransportError(f"{self._path}: {port_error_text(exc)}") from exc

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
            raise TransportError(f"{self._path} is not open")
        return self._port


class TcpTransport:
    """A TCP connection: a printer's raw port 9100, or a serial device server.

    Writes are bounded by ``write_timeout`` (the connect timeout unless given), so a device
    whose buffer is full (it stops reading) shows up as a failure instead of a hang.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 2.0,
        write_timeout: float | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._write_timeout = connect_timeout if write_timeout is None else write_timeout
        self._sock: socket.socket | None = None

    @property
    def name(self) -> str:
        return f"{self._host}:{self._port}"

    def open(self) -> None:
        self.close()
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._connect_timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.name}: {port_error_text(exc)}") from exc
        with contextlib.suppress(OSError):
            # Commands are a few bytes each and the reply is awaited: Nagle would only add
            # delay. Keepalive finds a peer that vanished without a word.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.settimeout(self._write_timeout)
        self._sock = sock

    def write(self, data: bytes) -> None:
        sock = self._require_open()
        try:
            sock.sendall(data)
        except OSError as exc:  # socket.timeout is an OSError too
            raise TransportError(f"sending to {self.name} failed: {port_error_text(exc)}") from exc

    def read(self, timeout: float) -> bytes:
        sock = self._require_open()
        try:
            ready, _, _ = select.select([sock], [], [], max(timeout, 0.0))
            if not ready:
                return b""
            data = sock.recv(_READ_CHUNK)
        except (OSError, ValueError) as exc:  # ValueError: the socket was closed meanwhile
            raise TransportError(f"reading from {self.name} failed: {exc}") from exc
        if not data:
            raise TransportError(f"{self.name} closed the connection") from ConnectionResetError(
                "the other end closed the connection"
            )
        return data

    def discard_input(self) -> None:
        while self.read(0.0):
            pass

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
            raise TransportError(f"{self.name} is not connected")
        return self._sock


class _Pipe:
    """One direction of a loopback: bytes written at one end, waiting to be read at the other."""

    def __init__(self, cond: threading.Condition) -> None:
        self.cond = cond
        self.data = bytearray()


class LoopbackTransport:
    """One end of an in-memory byte pipe, for unit tests of drivers and twins without a port.

    Both ends share one lock. An end that is not open refuses reads and writes as a closed
    port would; :meth:`unplug` makes ``open`` fail (and breaks an open link) until
    :meth:`plug` is called, so backoff and reconnects can be tested without sockets.
    """

    def __init__(self, name: str, inbox: _Pipe, outbox: _Pipe) -> None:
        self._name = name
        self._inbox = inbox
        self._outbox = outbox
        self._cond = inbox.cond
        self._open = False
        self._unplugged = False
        self._interrupted = False
        self.opens = 0

    @property
    def name(self) -> str:
        return self._name

    def open(self) -> None:
        with self._cond:
            if self._unplugged:
                raise TransportError(f"cannot open {self._name}: unplugged") from ConnectionError(
                    "unplugged"
                )
            self._inbox.data.clear()
            self._open = True
            self.opens += 1

    def write(self, data: bytes) -> None:
        with self._cond:
            self._check()
            self._outbox.data += data
            self._cond.notify_all()

    def read(self, timeout: float) -> bytes:
        give_up_at = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while True:
                self._check()
                if self._inbox.data:
                    data = bytes(self._inbox.data)
                    self._inbox.data.clear()
                    return data
                remaining = give_up_at - time.monotonic()
                if remaining <= 0 or self._interrupted:
                    self._interrupted = False
                    return b""
                self._cond.wait(remaining)

    def discard_input(self) -> None:
        with self._cond:
            self._check()
            self._inbox.data.clear()

    def interrupt(self) -> None:
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._open = False
            self._cond.notify_all()

    def unplug(self) -> None:
        """The cable is pulled: the open link breaks, and ``open`` fails until :meth:`plug`."""
        with self._cond:
            self._unplugged = True
            self._cond.notify_all()

    def plug(self) -> None:
        with self._cond:
            self._unplugged = False

    def _check(self) -> None:
        if self._unplugged:
            raise TransportError(f"lost {self._name}: unplugged") from ConnectionError("unplugged")
        if not self._open:
            raise TransportError(f"{self._name} is not open")


def loopback_pair(
    host_name: str = "loopback", device_name: str = "loopback-device"
) -> tuple[LoopbackTransport, LoopbackTransport]:
    """Two connected ends: the driver's (``host``) and the device's (a twin, or the test).

    What one end writes the other reads. The device end is opened here, as a device is
    always listening; the driver's end opens when the driver opens it.
    """
    cond = threading.Condition()
    to_device, to_host = _Pipe(cond), _Pipe(cond)
    host = LoopbackTransport(host_name, inbox=to_host, outbox=to_device)
    device = LoopbackTransport(device_name, inbox=to_device, outbox=to_host)
    device.open()
    return host, device
