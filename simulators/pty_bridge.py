"""A pseudo-terminal whose far end is a TCP connection: a serial port for a TCP-only twin.

The ZPL printer twin listens on TCP (as a networked Zebra does on port 9100), but a printer
can just as well hang on a serial cable. Rather than teach the twin a second transport, the
bridge plays the cable: what the driver writes to the pty goes to the twin over one TCP
connection, and what the twin answers (``~HS`` status, SGD replies) comes back on the pty.
The twin thus sees exactly one long-lived "connection", as a printer on a serial line does.

If the twin drops that connection (a ``drop-next`` fault), the bytes in flight are lost,
as on a cable that glitched, and the next bytes the driver writes open a new connection.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from pathlib import Path

from simulators.closing import ClosedOnExit
from simulators.pty_port import PtyPort

__all__ = ["PtyBridge"]

_MAX_PENDING = 65536
"""What the bridge holds for a reader that does not read; a UART drops the rest."""
_CONNECT_TIMEOUT = 2.0


class PtyBridge(ClosedOnExit):
    """A pty (with an optional ``/dev/serial/by-id``-like ``link``) carried to ``target``.

    The bridge keeps its own handle on the slave side, so the device path survives the
    driver closing and reopening the port. :meth:`close` removes the link if still ours.
    """

    def __init__(self, target: tuple[str, int], link: Path | None = None) -> None:
        self.target = target
        self.link = link
        self._lock = threading.Lock()
        self._closed = False
        self._sock: socket.socket | None = None
        self._to_pty = bytearray()
        self._port = PtyPort(link)
        self._master = self._port.master
        self.device_path = self._port.device_path
        try:
            self._wake_r, self._wake_w = os.pipe()
        except BaseException:
            self._port.close()
            raise
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="pty-bridge", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop carrying bytes, close the pty and the connection; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        self._drop_connection()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._port.close()

    # -- the loop (its own thread) ------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
            sock = self._sock
            readers: list[int | socket.socket] = [self._master, self._wake_r]
            if sock is not None:
                readers.append(sock)
            writers: list[int] = [self._master] if self._to_pty else []
            try:
                readable, writable, _ = select.select(readers, writers, [])
            except (OSError, ValueError):
                return  # a descriptor went away under us: we are being closed
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 4096)
            if self._master in readable:
                self._from_driver()
            if sock is not None and sock in readable:
                self._from_twin(sock)
            if self._master in writable:
                self._flush_to_pty()

    def _from_driver(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError:
            return  # EAGAIN, or EIO while the driver side is being reopened
        if not data:
            return
        sock = self._sock or self._connect()
        if sock is None:
            return  # the twin is not there: the bytes fall off the cable
        try:
            sock.sendall(data)
        except OSError:
            self._drop_connection()

    def _from_twin(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop_connection()
            return
        room = _MAX_PENDING - len(self._to_pty)
        self._to_pty += data[: max(room, 0)]
        self._flush_to_pty()

    def _flush_to_pty(self) -> None:
        if not self._to_pty:
            return
        try:
            sent = os.write(self._master, self._to_pty)
        except BlockingIOError:
            return
        except OSError:
            self._to_pty.clear()
            return
        del self._to_pty[:sent]

    def _connect(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(self.target, timeout=_CONNECT_TIMEOUT)
        except OSError:
            return None
        sock.settimeout(_CONNECT_TIMEOUT)  # bounds sendall; reads only follow select
        self._sock = sock
        return sock

    def _drop_connection(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
