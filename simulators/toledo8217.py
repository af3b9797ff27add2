"""A Toledo 8217 scale twin on a pseudo-terminal, written from the protocol notes.

It deliberately shares no code with ``device_drivers``: a twin built from ``PROTOCOLS.md``
("Toledo 8217 (as in Odoo's IoT box)"), not from the driver, is what exposes a driver that
misreads it. What it speaks, device side:

- The host sends ``W`` (no terminator). A still load is answered ``STX <weight> CR``, with
  ``N`` before the CR while a tare is in force; the weight is zero-padded, with as many
  decimals as the scale's readability, in the unit the scale is set to (the frame has none).
- A load that cannot be weighed is answered ``STX ? <status> CR``. The status byte is a
  printable character, as a real scale sends it: bit 6 is always set (no condition is
  ``@``, in motion ``A``), and bits 0-5 are in motion, over capacity, under zero, outside
  zero capture range, centre of zero, net weight. Bit 7 is the line's parity bit, which the
  pty does not carry.
- Nothing but ``W`` is documented, so any other byte from the host goes unanswered.

Faults, on command: a load that wobbles then settles (reported as motion, or, with
``report_motion=False``, as a weight that keeps changing, which is what an indicator with its
motion filter set too eager sends), overload, underload, line noise, half frames, slow
replies, no reply, and the device vanishing (the pty closes) and coming back on a new pty
behind the same ``/dev/serial/by-id``-style link.

Replies are produced by one background thread in order, so a held-back reply delays the ones
after it, as on a real single-threaded indicator.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

# The loop, the load and the by-id link work as for the other serial twins: one of each.
from simulators.load import PlatformLoad
from simulators.serial_scale import SerialScaleTwin, buffer_output

__all__ = [
    "GARBAGE",
    "HELP",
    "MOTION",
    "NET",
    "OVER_CAPACITY",
    "Toledo8217Twin",
    "apply_command",
]

STX = b"\x02"
CR = b"\r"

MOTION = 0x01
OVER_CAPACITY = 0x02
UNDER_ZERO = 0x04
OUTSIDE_ZERO_CAPTURE = 0x08
CENTRE_OF_ZERO = 0x10
NET = 0x20
ALWAYS_SET = 0x40
"""Bit 6 of the status byte: always 1, which makes the byte a printable character."""

GARBAGE = b"\xf1\x00\x8c\x1f\xfe\x7f\x9a\x05\xe6"
"""Line noise as a wrong baud rate produces it: no STX or CR inside, not even with the top
bit stripped (as a 7-bit port does), so it can never be taken for a frame."""

Fault = Literal["no_reply", "garbage", "half"]
Forced = Literal["overload", "underload"]


@dataclass
class _Pending:
    """A request received and not yet answered; the reply is computed when it goes out."""

    produce: Callable[[], bytes]
    mangle: str | None = None
    """A :data:`Fault`, or none."""


class Toledo8217Twin(SerialScaleTwin):
    """One simulated Toledo 8217 scale with a settable load and faults on command.

    ``link`` gets a symlink to the pty, like a ``/dev/serial/by-id`` name; the link survives
    a simulated unplug and replug while the pty behind it changes, as when a USB adapter is
    pulled and plugged back in.
    """

    def __init__(
        self,
        link: Path | None = None,
        *,
        weight: Decimal = Decimal(0),
        unit: str = "kg",
        decimals: int = 3,
        capacity: Decimal = Decimal(15),
        report_motion: bool = True,
    ) -> None:
        if not 0 <= decimals <= 4:
            raise ValueError("decimals must be 0..4")
        self.link = link
        self.unit = unit
        """What the display says; the frame never carries it."""
        self.decimals = decimals
        self.capacity = capacity
        self.report_motion = report_motion
        self.received = bytearray()
        """Every byte the host sent, in order, for tests to assert on."""

        self._division = Decimal(1).scaleb(-decimals)
        super().__init__(PlatformLoad(self._division, weight), link)
        self._queue: deque[_Pending] = deque()
        self._transit: deque[tuple[float, bytes]] = deque()
        self._outbox = bytearray()
        self._start_loop("toledo8217-twin")

    # -- what a test or an operator can do ------------------------------------------------

    def set_weight(self, value: Decimal, *, settle: float = 0.0) -> None:
        """Put a gross load on the platform; with ``settle`` it swings that long first."""
        with self._lock:
            self._platform.put(value, settle=settle)
        self._wake()

    def set_tare(self, value: Decimal) -> None:
        """A tare set on the keypad (``0`` clears it): replies then say ``N`` and show net."""
        with self._lock:
            self._platform.set_tare(value)

    def send_raw(self, data: bytes) -> None:
        """Put bytes on the wire now, unasked."""
        with self._lock:
            self._emit(data)
        self._wake()

    def send_garbage(self) -> None:
        """Line noise, unasked."""
        self.send_raw(GARBAGE)

    # -- the simulated scale ---------------------------------------------------------------

    def _shown(self, value: Decimal) -> Decimal:
        return self._platform.shown(value)

    def _weight_reply(self) -> bytes:
        """What ``W`` is answered with, from the state at the moment it goes out."""
        platform = self._platform
        tare = platform.tare
        status = NET if tare else 0
        if self._shown(platform.load) == 0:
            status |= CENTRE_OF_ZERO
        if platform.over(self.capacity):  # the 8217 has no zero of its own: gross is load
            return self._status_frame(status | OVER_CAPACITY)
        if platform.forced == "underload" or self._shown(platform.net) < 0:
            return self._status_frame(status | UNDER_ZERO)
        now = time.monotonic()
        if self.report_motion and platform.moving(now):
            return self._status_frame(status | MOTION)
        net, moving = platform.reading(now)
        if moving:
            net = max(net, Decimal(0))
        # Two integer digits at least, zero-padded, as the display's fixed field: "01.250".
        width = self.decimals + 3 if self.decimals else 2
        text = format(self._shown(net), f"0{width}.{self.decimals}f")
        return STX + text.encode("ascii") + (b"N" if tare else b"") + CR

    @staticmethod
    def _status_frame(status: int) -> bytes:
        return STX + b"?" + bytes([ALWAYS_SET | status]) + CR

    # -- the wire ----------------------------------------------------------------------------

    def _on_byte(self, byte: int) -> None:
        self.received.append(byte)
        if byte != ord("W"):
            return  # CR or LF after a W (the protocol wants none), or an undocumented command
        if self._mute:
            return
        fault = self._next_fault()
        if fault == "no_reply":
            return
        self._queue.append(_Pending(self._weight_reply, fault))

    def _answer(self, now: float) -> None:
        """Compute every queued reply now; it then spends the configured delay in transit:
        a slow link delivers an old weight late, it does not weigh again."""
        while self._queue:
            head = self._queue.popleft()
            reply = head.produce()
            if head.mangle == "garbage":
                reply = GARBAGE
            elif head.mangle == "half":
                reply = reply[: max((len(reply) - 1) // 2, 1)]
            self._send_later(self._transit, reply, now)

    def _emit(self, data: bytes) -> None:
        if self._pty.master is None:
            return  # unplugged: nothing reaches the wire
        buffer_output(self._outbox, data)

    def _watched(self) -> tuple[list[int], list[int]]:
        master = self._pty.master
        if master is None:
            return [], []
        return [master], ([master] if self._outbox else [])

    def _ready(self, readable: list[int], writable: list[int]) -> None:
        master = self._pty.master
        if master is not None:
            if master in readable:
                self._read_from(master)
            if master in writable:
                self._write_to(master)

    def _due(self, now: float) -> list[float]:
        self._answer(now)
        next_at = self._deliver(self._transit, now, self._emit)
        return [] if next_at is None else [next_at]

    def _read_from(self, master: int) -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return
        for byte in data:
            self._on_byte(byte)
        self._answer(time.monotonic())
        self._deliver(self._transit, time.monotonic(), self._emit)

    def _write_to(self, master: int) -> None:
        try:
            sent = os.write(master, self._outbox)
        except BlockingIOError:
            return
        except OSError:
            self._outbox.clear()
            return
        del self._outbox[:sent]

    def _plug_in(self) -> None:
        self._pty.plug_in()
        self._connected = True

    def _unplug(self) -> None:
        self._connected = False
        self._queue.clear()
        self._transit.clear()
        self._outbox.clear()
        self._pty.unplug()


# -- the command line hook ------------------------------------------------------------------

HELP = """\
weight VALUE [SETTLE]     put a gross load on the platform (SETTLE: seconds of swinging)
tare VALUE                a keypad tare (0 clears it); replies then say N
wobble SECONDS [AMPL]     swing for a while, then hold still
overload | underload      report that state until 'clear'
noreply [N|forever]       swallow the next N requests (default 1)
garble [N]                replace the next N replies by line noise
cut [N]                   send only half of the next N replies
delay SECONDS             hold every reply back this long
garbage                   send line noise now
disconnect [SECONDS]      vanish; come back after SECONDS (or on 'reconnect')
reconnect                 come back now
clear                     back to a healthy device
status                    print load, tare and connection"""


def apply_command(twin: Toledo8217Twin, text: str) -> str | None:
    """Carry out one operator line (see :data:`HELP`); the text to print, if any.

    Raises :class:`ValueError` (or :class:`IndexError`, :class:`decimal.InvalidOperation`)
    for a line it does not understand, so a command loop can report it and carry on.
    """
    word, *args = text.split()
    count = int(args[0]) if args and args[0].isdigit() else 1
    simple: dict[str, Callable[[], None]] = {
        "overload": twin.overload,
        "underload": twin.underload,
        "clear": twin.clear_faults,
        "garbage": twin.send_garbage,
        "reconnect": twin.reconnect,
    }
    if word in simple:
        simple[word]()
    elif word == "weight":
        twin.set_weight(Decimal(args[0]), settle=float(args[1]) if len(args) > 1 else 0.0)
    elif word == "tare":
        twin.set_tare(Decimal(args[0]))
    elif word == "wobble":
        twin.wobble(float(args[0]), Decimal(args[1]) if len(args) > 1 else None)
    elif word == "noreply":
        twin.no_reply(None if args == ["forever"] else count)
    elif word == "garble":
        twin.garble_replies(count)
    elif word == "cut":
        twin.cut_replies(count)
    elif word == "delay":
        twin.set_delay(float(args[0]))
    elif word == "disconnect":
        twin.disconnect(float(args[0]) if args else None)
    elif word == "status":
        return (
            f"net: {twin.net} {twin.unit}  connected: {twin.connected}  device: {twin.device_path}"
        )
    elif word == "help":
        return HELP
    else:
        raise ValueError("unknown command; try 'help'")
    return None
