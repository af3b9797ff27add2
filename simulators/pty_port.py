"""The serial port every pty twin plugs into: a raw pty pair behind a by-id style link.

The serial twins (scanner, MT-SICS and Toledo scales, the Modbus RTU bus, the printer's
bridge) all need the same port: a pseudo-terminal a driver opens exactly like a
``/dev/ttyUSB*``, optionally reached through a ``/dev/serial/by-id``-like symlink, which
survives an unplug while the pty behind it changes. Getting that right has subtleties (raw
mode before any reader opens it, a link replaced atomically, a link left alone once another
twin took it over) that are worth having once. (Not named ``pty`` so that it can never
shadow the standard library module of that name.)
"""

from __future__ import annotations

import contextlib
import os
import tty
from pathlib import Path

__all__ = ["PtyPlug", "PtyPort", "point_symlink", "remove_symlink_to"]


def point_symlink(link: Path, target: str) -> None:
    """Make ``link`` point at ``target``, replacing whatever it pointed at."""
    # Build the new link beside the old one and rename it over, so a driver reconnecting
    # at that moment sees either the old device or the new one, never no link at all.
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    os.replace(temporary, link)


def remove_symlink_to(link: Path, target: str) -> None:
    """Remove ``link`` if it still points at ``target``."""
    # Another twin may already have taken the link over; leave it alone then.
    with contextlib.suppress(OSError):
        if link.is_symlink() and os.readlink(link) == target:
            link.unlink()


class PtyPort:
    """One pty pair: the twin writes and reads the non-blocking ``master``, a driver opens
    :attr:`device_path` (or ``link``). The twin keeps ``slave`` open itself, so the device
    survives the driver closing and reopening the port, as a real port survives a driver
    restart."""

    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        try:
            # Raw at once, before any reader opens the port: a cooked pty would turn CR into
            # LF and echo what the driver writes back at it.
            tty.setraw(self.slave)
            os.set_blocking(self.master, False)
            self.device_path = os.ttyname(self.slave)
            if link is not None:
                point_symlink(link, self.device_path)
        except BaseException:
            os.close(self.master)
            os.close(self.slave)
            raise
        self._closed = False

    def close(self) -> None:
        """Close both sides (the driver's reads fail) and remove the link if still ours."""
        if self._closed:
            return
        self._closed = True
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link is not None:
            remove_symlink_to(self.link, self.device_path)


class PtyPlug:
    """Where a USB serial adapter is plugged in: unplugging closes its pty, plugging it
    back in opens a new one behind the same link, as a real adapter gets a new tty.

    :attr:`device_path` is the latest pty's, kept after an unplug (``None`` before the first
    plug-in).
    """

    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.port: PtyPort | None = None
        self.device_path: str | None = None

    @property
    def master(self) -> int | None:
        """The twin's side of the pty while plugged in."""
        return None if self.port is None else self.port.master

    def plug_in(self) -> PtyPort:
        port = PtyPort(self.link)
        self.port = port
        self.device_path = port.device_path
        return port

    def unplug(self) -> None:
        """Close the pty and remove the link (if still ours); a no-op when unplugged."""
        port, self.port = self.port, None
        if port is not None:
            port.close()
