"""A serial barcode scanner twin on a pseudo-terminal, written from the protocol notes.

It deliberately shares no code with ``device_drivers``: a twin built from the same spec,
not from the driver, is what exposes a driver that misreads the spec.

The driver opens the pty's slave side exactly like a real ``/dev/ttyUSB*``; the twin
writes to the master side what a scanner would send. Faults are injected by sending what
a faulty scanner or cable sends: noise, a line cut off, raw bytes.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path

from simulators.closing import ClosedOnExit
from simulators.pty_port import PtyPort

# The link helpers used to live here and other twins imported them from here; they moved
# to ``pty_port`` with the rest of the port, and these names stay for anyone still using them.
from simulators.pty_port import point_symlink as _point_symlink  # noqa: F401
from simulators.pty_port import remove_symlink_to as _remove_symlink_to  # noqa: F401

__all__ = ["GARBAGE", "GS", "HALF_LINE", "ScannerTwin"]

GARBAGE = b"\xf0\x00\x8c\x1f\xfe\x7f\x9a\x03\xe6"
"""What a scanner at the wrong baud rate looks like: no CR, LF, GS or ``|`` inside, so it
stays one rejected line instead of splitting into pieces that might look printable."""

GS = "\x1d"
"""Group separator: how a scanner sends each FNC1 after the first."""

HALF_LINE = b"]C10109506000"
"""The start of a GS1-128 read, as left on the wire when a scanner loses power mid-line."""


class ScannerTwin(ClosedOnExit):
    """One simulated serial scanner.

    The twin keeps its own handle on the slave side open, so the pty (and its device name)
    survives the driver closing and reopening the port, as a real port survives a driver
    restart. Closing the twin is the simulated unplug: the driver's reads fail.
    """

    def __init__(
        self,
        link: Path | None = None,
        terminator: bytes = b"\r",
        *,
        write_timeout: float = 2.0,
    ) -> None:
        self.terminator = terminator
        self.write_timeout = write_timeout
        self.drops_gs = False
        """Fault: strip every GS (FNC1) from reads, as a scanner misconfigured that way does."""
        self._lock = threading.Lock()
        self._closed = False
        self._port = PtyPort(link)
        self._master = self._port.master
        self.device_path = self._port.device_path
        self.link = link

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: str, symbology: str | None = None) -> None:
        """Send one read as a configured scanner would: AIM identifier, data, terminator.

        Text is sent as UTF-8, as scanners reading non-ASCII QR codes do, so the driver's
        refusal of non-ASCII can be exercised too. With :meth:`drop_gs_separators` on, every
        GS in ``data`` is left out, and variable-length GS1 fields run into the next ones.
        """
        if self.drops_gs:
            data = data.replace(GS, "")
        self.send_raw(((symbology or "") + data).encode("utf-8") + self.terminator)

    def drop_gs_separators(self, enabled: bool = True) -> None:
        """Fault: send reads without their GS (FNC1) separators, until turned off.

        Some scanners are set up this way (FNC1 transmission off, or mapped to nothing); the
        AIM identifier still says GS1, so the driver has to notice from the data. Raw bytes
        (:meth:`send_raw`) are never changed.
        """
        self.drops_gs = enabled

    def send_raw(self, data: bytes) -> None:
        """Put exactly these bytes on the wire, in one piece relative to other senders.

        Raises :class:`TimeoutError` when nobody has drained the port for ``write_timeout``
        seconds (the pty buffer is full), rather than blocking a test forever.
        """
        with self._lock:
            if self._closed:
                raise ValueError("the scanner twin is closed")
            self._write_all(data)

    def send_garbage(self) -> None:
        """Send line noise followed by a terminator."""
        self.send_raw(GARBAGE + self.terminator)

    def send_half_line(self, data: bytes = HALF_LINE) -> None:
        """Send the start of a line and never finish it."""
        self.send_raw(data)

    def close(self) -> None:
        """Unplug: close both pty sides and remove the link if it is still ours."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._port.close()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        give_up_at = time.monotonic() + self.write_timeout
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                remaining = give_up_at - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"nobody is reading {self.device_path}; its buffer is full"
                    ) from None
                select.select([], [self._master], [], remaining)
                continue
            view = view[written:]
