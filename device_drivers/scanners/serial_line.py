"""A barcode scanner on a serial line (RS-232, USB-CDC or a pty standing in for one).

The driver only moves bytes and keeps the device's health; what the bytes mean is
:mod:`device_drivers.scanners.framing`. It opens the port lazily and, when the port fails,
keeps trying with exponential backoff, so a scanner unplugged mid-shift comes back on its
own and the station loop calling :meth:`SerialLineScanner.read_scan` never sees an
exception. It never writes to the port: an unknown device must not be probed.

Opening a port discards what the scanner sent while nobody read it (pyserial flushes the
input buffer, and a line whose time is unknown must not be booked now). Those bytes are
counted (``stale_input``, one per line) and logged with what they held, so the operator
learns which cartons to scan again instead of losing them without a word.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from device_drivers.errors import DeviceConfigError, RejectedInputError
from device_drivers.link import LinkHealth
from device_drivers.options import config_from_options
from device_drivers.port_errors import port_error_text
from device_drivers.scanners.base import Gs1Mode, Scan, ScanErrorReason
from device_drivers.scanners.framing import (
    DiscardedLine,
    LineFrame,
    LineFramer,
    check_fnc1_separator,
    parse_line,
)
from device_drivers.scanners.gs1 import check_expected_ais
from device_drivers.status import DeviceStatus
from device_drivers.transport import ByteTransport, SerialTransport, TransportError

__all__ = [
    "SerialLineScanner",
    "SerialScannerConfig",
    "Terminator",
    "create_serial_line_scanner",
]

log = logging.getLogger("device_drivers.scanner")

Terminator = Literal["CR", "LF", "CRLF"]

_STALE_LINES_LOGGED = 10

_DEGRADED_AFTER = 3
"""Discarded lines in a row before a connected scanner counts as degraded: one smudge is
noise, a run of them is a wrong baud rate or a bad cable."""


@dataclass(frozen=True, slots=True)
class SerialScannerConfig:
    """How one serial scanner is wired and set up.

    ``port`` should be a stable name (``/dev/serial/by-id/...`` or a symlink to it), since
    ``/dev/ttyUSB0`` renumbers after a reboot. ``terminator`` documents what the scanner is
    set to send; the framer accepts CR, LF and CRLF alike, so a mismatch does not lose scans.
    ``gs1_expected_ais`` lists AIs the labels at this station carry (say ``["01", "10",
    "21"]``): a scan that lacks one of them while a lot or serial holds it is refused as
    fields run together by a scanner that drops FNC1, which the data alone cannot show.
    """

    device_id: str
    port: str | os.PathLike[str]
    baudrate: int = 9600
    terminator: Terminator = "CR"
    max_length: int = 256
    half_line_timeout: float = 0.3
    fnc1_separator: str = "\x1d"
    gs1: Gs1Mode = "auto"
    gs1_expected_ais: tuple[str, ...] = ()
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 2.0

    def __post_init__(self) -> None:
        if not self.device_id:
            raise DeviceConfigError("device_id must not be empty")
        if not os.fspath(self.port):
            raise DeviceConfigError(f"{self.device_id}: port must not be empty")
        if self.baudrate <= 0:
            raise DeviceConfigError(f"{self.device_id}: baudrate must be positive")
        if self.terminator not in get_args(Terminator):
            raise DeviceConfigError(
                f"{self.device_id}: terminator must be CR, LF or CRLF, got {self.terminator!r}"
            )
        if self.gs1 not in get_args(Gs1Mode):
            raise DeviceConfigError(
                f"{self.device_id}: gs1 must be auto, always or never, got {self.gs1!r}"
            )
        if self.max_length < 1 or self.half_line_timeout <= 0:
            raise DeviceConfigError(
                f"{self.device_id}: max_length and half_line_timeout must be positive"
            )
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise DeviceConfigError(
                f"{self.device_id}: need 0 < reconnect_min_delay <= reconnect_max_delay"
            )
        check_fnc1_separator(self.fnc1_separator)
        expected: object = self.gs1_expected_ais
        if isinstance(expected, str) or not isinstance(expected, list | tuple):
            raise DeviceConfigError(
                f"{self.device_id}: gs1_expected_ais must be a list of AIs, got {expected!r}"
            )
        try:
            ais = check_expected_ais(expected)
        except ValueError as exc:
            raise DeviceConfigError(f"{self.device_id}: gs1_expected_ais: {exc}") from None
        object.__setattr__(self, "gs1_expected_ais", tuple(sorted(ais)))


class SerialLineScanner:
    """:class:`~device_drivers.scanners.base.Scanner` over a byte transport (a serial port).

    Call ``read_scan`` from one thread (the station loop); ``status`` and ``close`` are
    safe from any other, so a status page can look and shutdown can interrupt a read.
    ``transport`` replaces the serial port (a loopback in unit tests); a transport that
    keeps stale input should hand it to :meth:`discard_stale`.
    """

    def __init__(
        self, config: SerialScannerConfig, *, transport: ByteTransport | None = None
    ) -> None:
        self.config = config
        self._transport = (
            transport
            if transport is not None
            else SerialTransport(
                config.port, baudrate=config.baudrate, on_stale_input=self.discard_stale
            )
        )
        self._port_open = False
        self._framer = self._new_framer()
        self._ready: deque[Scan] = deque()
        self._io_lock = threading.Lock()
        self._closing = threading.Event()
        self._link = LinkHealth(
            config.device_id,
            kind="scanner",
            reasons=(*get_args(ScanErrorReason), "stale_input"),
            min_delay=config.reconnect_min_delay,
            max_delay=config.reconnect_max_delay,
            logger=log,
        )
        self._discards_in_a_row = 0
        self._expected_ais = frozenset(config.gs1_expected_ais)

    def __enter__(self) -> SerialLineScanner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_scan(self, timeout: float) -> Scan | None:
        """Wait up to ``timeout`` seconds for the next good scan."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._io_lock:
            while not self._closing.is_set():
                if self._ready:
                    return self._ready.popleft()
                now = time.monotonic()
                if not self._port_open and not self._try_open(now):
                    if now >= deadline:
                        return None
                    self._closing.wait(max(min(deadline, self._link.next_attempt_at) - now, 0.0))
                    continue
                self._receive(self._read_wait(now, deadline))
                if self._ready:
                    return self._ready.popleft()
                if time.monotonic() >= deadline:
                    return None
        return None

    def status(self) -> DeviceStatus:
        """A snapshot, consistent even while another thread is reading."""
        return self._link.snapshot()

    def close(self) -> None:
        """Release the port for good; a blocked ``read_scan`` returns ``None`` promptly."""
        self._closing.set()
        # Best effort: the reader also sees the closing flag when its wait ends.
        self._transport.interrupt()
        with self._io_lock:
            self._drop_port()
            self._link.closed()

    # -- transport -------------------------------------------------------------------

    def _try_open(self, now: float) -> bool:
        if not self._link.may_attempt(now):
            return False
        self._framer = self._new_framer()  # bytes from before the outage are not a line
        self._discards_in_a_row = 0
        try:
            # Stale input reaches discard_stale inside open, so it is counted before the
            # link shows connected and no reader misses it.
            self._transport.open()
        except TransportError as exc:
            self._link.open_failed(
                now, f"cannot open {self._transport.name}: {port_error_text(exc)}"
            )
            return False
        self._port_open = True
        self._link.opened(now, self._transport.name)
        return True

    def _read_wait(self, now: float, deadline: float) -> float:
        # Wake up in time to declare a pending partial line a half line, even if the
        # caller is willing to wait longer.
        wake_at = deadline
        half_line_at = self._framer.deadline()
        if half_line_at is not None:
            wake_at = min(wake_at, half_line_at)
        return max(wake_at - now, 0.0)

    def _receive(self, wait: float) -> None:
        try:
            chunk = self._transport.read(wait)
        except TransportError as exc:  # whatever the port throws, the scanner is gone
            if self._closing.is_set():
                return
            self._drop_port()
            detail = f"lost {self._transport.name}: {port_error_text(exc)}"
            self._link.lost(time.monotonic(), detail)
            return
        now = time.monotonic()
        received_at = datetime.datetime.now(datetime.UTC)
        if chunk:
            self._link.data_arrived()
        events = self._framer.feed(chunk, now) if chunk else self._framer.expire(now)
        for event in events:
            if isinstance(event, LineFrame):
                self._accept_line(event.raw, received_at)
            else:
                self._discard(event)

    def _drop_port(self) -> None:
        self._port_open = False
        self._transport.close()

    def _new_framer(self) -> LineFramer:
        return LineFramer(
            max_length=self.config.max_length,
            half_line_timeout=self.config.half_line_timeout,
            fnc1_separator=self.config.fnc1_separator,
        )

    # -- accounting ------------------------------------------------------------------

    def _accept_line(self, raw: bytes, received_at: datetime.datetime) -> None:
        self._discards_in_a_row = 0  # a well-framed line shows the wire itself is fine
        try:
            scan = parse_line(
                raw,
                device_id=self.config.device_id,
                received_at=received_at,
                fnc1_separator=self.config.fnc1_separator,
                gs1=self.config.gs1,
                gs1_expected_ais=self._expected_ais,
            )
        except RejectedInputError as exc:
            self._count_error(exc.reason, exc.detail, sample=raw)
            return
        self._link.scanned()
        self._ready.append(scan)

    def discard_stale(self, stale: bytes, truncated: bool) -> None:
        """Count and log input that waited on the port from before it was opened.

        The serial transport calls this from ``open``: a line whose time is unknown must not
        be booked now, but the operator must learn which cartons to scan again.
        """
        lines = [line for line in stale.replace(b"\r", b"\n").split(b"\n") if line]
        for _ in lines:
            self._link.count("stale_input", "discarded at open: sent while the port was closed")
        log.warning(
            "scanner input sent while the port was closed was discarded at open: "
            "%s%d line(s), %d byte(s); scan those cartons again",
            "at least " if truncated else "",
            len(lines),
            len(stale),
            extra={
                "event": "stale_input_discarded",
                "device": self.config.device_id,
                "lines": len(lines),
                "bytes": len(stale),
                "truncated": truncated,
                "samples": [repr(line[:80]) for line in lines[:_STALE_LINES_LOGGED]],
            },
        )

    def _discard(self, event: DiscardedLine) -> None:
        self._discards_in_a_row += 1
        self._count_error(event.reason, "line discarded", sample=event.sample)
        if self._discards_in_a_row >= _DEGRADED_AFTER:
            self._link.degrade()

    def _count_error(self, reason: str, detail: str, *, sample: bytes) -> None:
        self._link.count(reason, detail)
        log.warning(
            "scanner line rejected (%s): %s",
            reason,
            detail,
            extra={"device": self.config.device_id, "reason": reason, "sample": repr(sample)},
        )


def create_serial_line_scanner(device_id: str, options: Mapping[str, object]) -> SerialLineScanner:
    """The ``serial-line`` entry point: a site file's scanner section to a driver.

    Options are :class:`SerialScannerConfig`'s fields; an unknown or mistyped one is a
    :class:`DeviceConfigError` naming it, so a typo in the site file fails at start-up.
    """
    config = config_from_options(
        SerialScannerConfig, device_id, options, driver="serial-line", required=("port",)
    )
    return SerialLineScanner(config)
