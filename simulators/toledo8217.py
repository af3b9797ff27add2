"""A Toledo 8217 scale twin on a pseudo-terminal, written from the protocol notes.

It deliberately shares no code with ``device_drivers``: a twin built from ``PROTOCOLS.md``
("Toledo 8217 (as in Odoo's IoT box)"), not from the driver, is what exposes a driver that
misreads it. What it speaks, device side:

- The host sends ``W`` (no terminator). A still load is answered ``STX <weight> CR``, with
  ``N`` before the CR while a tare is in force; the weight is zero-padded, with as many
  decimals as the scale's readability, in the unit the scale is set to (the frame has none).
- A load that cannot be weighed is answered ``STX ? <status> CR``. Status bits: 0 in motion,
  1 over capacity, 2 under zero, 3 outside zero capture range, 4 centre of zero, 5 net
  weight, 6 bad command. Any other byte from the host gets the bad-command status.

Faults, on command: a load that wobbles then settles (reported as motion, or, with
``report_motion=False``, as a weight that keeps changing, which is what an indicator with its
motion filter set too eager sends), overload, underload, line noise, half frames, slow
replies, no reply, and the device vanishing (the pty closes) and coming back on a new pty
behind the same ``/dev/serial/by-id``-style link.

Replies are produced by one background thread in order, so a held-back reply delays the ones
after it, as on a real single-threaded indicator.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Literal, TextIO

# The by-id link is handled exactly as for the other serial twins: one implementation of that.
from simulators.scanner import _point_symlink, _remove_symlink_to

__all__ = [
    "GARBAGE",
    "HELP",
    "MOTION",
    "NET",
    "OVER_CAPACITY",
    "Toledo8217Twin",
    "apply_command",
    "run_cli",
]

STX = b"\x02"
CR = b"\r"

MOTION = 0x01
OVER_CAPACITY = 0x02
UNDER_ZERO = 0x04
OUTSIDE_ZERO_CAPTURE = 0x08
CENTRE_OF_ZERO = 0x10
NET = 0x20
BAD_COMMAND = 0x40

GARBAGE = b"\xf1\x00\x8c\x1f\xfe\x7f\x9a\x05\xe6"
"""Line noise as a wrong baud rate produces it: no STX or CR inside, not even with the top
bit stripped (as a 7-bit port does), so it can never be taken for a frame."""

_WOBBLE_PATTERN = (9, -7, 5, -8, 6, -4, 7, -6, 3, -5)
"""Offsets (tenths of the amplitude) a swinging load shows in turn: never the settled value."""

_MAX_PENDING_OUTPUT = 65536
"""What a device buffers for a reader that does not read; a UART drops the rest."""

Fault = Literal["no_reply", "garbage", "half"]
Forced = Literal["overload", "underload"]


@dataclass
class _Pending:
    """A request received and not yet answered; the reply is computed when it goes out."""

    produce: Callable[[], bytes]
    mangle: Fault | None = None


class Toledo8217Twin:
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
        self._lock = threading.RLock()
        self._load = weight
        self._tare = Decimal(0)
        self._settle_at = 0.0
        self._amplitude = self._division * 20
        self._wobble_step = 0
        self._forced: Forced | None = None
        self._faults: deque[Fault] = deque()
        self._mute = False
        self._delay = 0.0
        self._queue: deque[_Pending] = deque()
        self._transit: deque[tuple[float, bytes]] = deque()
        self._outbox = bytearray()
        self._actions: list[Callable[[], None]] = []
        self._master: int | None = None
        self._slave: int | None = None
        self.device_path: str | None = None
        self._reconnect_at: float | None = None
        self._connected = False
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            self._plug_in()
        except BaseException:
            self._unplug()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self._thread = threading.Thread(target=self._run, name="toledo8217-twin", daemon=True)
        self._thread.start()

    def __enter__(self) -> Toledo8217Twin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what a test or an operator can do ------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def net(self) -> Decimal:
        """The net weight the display shows when the load holds still."""
        with self._lock:
            return self._shown(self._load - self._tare)

    def set_weight(self, value: Decimal, *, settle: float = 0.0) -> None:
        """Put a gross load on the platform; with ``settle`` it swings that long first."""
        with self._lock:
            self._load = value
            if settle > 0:
                self._settle_at = time.monotonic() + settle
        self._wake()

    def set_tare(self, value: Decimal) -> None:
        """A tare set on the keypad (``0`` clears it): replies then say ``N`` and show net."""
        with self._lock:
            self._tare = value

    def wobble(self, seconds: float, amplitude: Decimal | None = None) -> None:
        """Make the load swing for ``seconds``, then hold still at its value."""
        with self._lock:
            self._settle_at = time.monotonic() + seconds
            if amplitude is not None:
                self._amplitude = amplitude
        self._wake()

    def overload(self) -> None:
        """Report over capacity whatever the load, until :meth:`clear_faults`."""
        with self._lock:
            self._forced = "overload"

    def underload(self) -> None:
        """Report under zero whatever the load, until :meth:`clear_faults`."""
        with self._lock:
            self._forced = "underload"

    def no_reply(self, count: int | None = 1) -> None:
        """Swallow the next ``count`` requests without a word (``None``: until cleared)."""
        with self._lock:
            if count is None:
                self._mute = True
            else:
                self._faults.extend(["no_reply"] * count)

    def garble_replies(self, count: int = 1) -> None:
        """Replace the next ``count`` replies by line noise, as a bad cable does."""
        with self._lock:
            self._faults.extend(["garbage"] * count)

    def cut_replies(self, count: int = 1) -> None:
        """Send only the first half of the next ``count`` replies, and no CR."""
        with self._lock:
            self._faults.extend(["half"] * count)

    def set_delay(self, seconds: float) -> None:
        """Hold every reply back this long (a slow bridge, a busy indicator)."""
        with self._lock:
            self._delay = max(seconds, 0.0)

    def clear_faults(self) -> None:
        """Back to a healthy device; the load and tare stay as they are."""
        with self._lock:
            self._forced = None
            self._faults.clear()
            self._mute = False
            self._delay = 0.0
            self._settle_at = 0.0
        self._wake()

    def send_raw(self, data: bytes) -> None:
        """Put bytes on the wire now, unasked."""
        with self._lock:
            self._emit(data)
        self._wake()

    def send_garbage(self) -> None:
        """Line noise, unasked."""
        self.send_raw(GARBAGE)

    def disconnect(self, seconds: float | None = None) -> None:
        """Vanish: close the pty and remove its link. With ``seconds`` the device comes back
        by itself after that long, on a new pty behind the same link; else on :meth:`reconnect`.
        """

        def unplug() -> None:
            self._unplug()
            self._reconnect_at = None if seconds is None else time.monotonic() + seconds

        self._on_loop(unplug)

    def reconnect(self) -> None:
        """Come back now (a no-op when connected)."""

        def plug_in() -> None:
            self._reconnect_at = None
            if not self._connected:
                self._plug_in()

        self._on_loop(plug_in)

    def close(self) -> None:
        """Stop the twin for good and remove the link if it is still ours."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            self._unplug()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the loop thread between two ``select`` calls, and wait for it:
        descriptors are only closed there, never under a ``select`` that holds them."""
        done = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                action()
            except BaseException as exc:  # handed to the caller below
                failures.append(exc)
            finally:
                done.set()

        with self._lock:
            if self._stopping:
                raise ValueError("the scale twin is closed")
            self._actions.append(run)
        self._wake()
        if not done.wait(timeout=5):
            raise TimeoutError("the scale twin's loop did not answer")
        if failures:
            raise failures[0]

    # -- the simulated scale ---------------------------------------------------------------

    def _shown(self, value: Decimal) -> Decimal:
        shown = value.quantize(self._division)
        return shown.copy_abs() if shown == 0 else shown  # no "-0.000" on a display

    def _moving(self) -> bool:
        return time.monotonic() < self._settle_at

    def _weight_reply(self) -> bytes:
        """What ``W`` is answered with, from the state at the moment it goes out."""
        net = self._load - self._tare
        status = NET if self._tare else 0
        if self._shown(self._load) == 0:
            status |= CENTRE_OF_ZERO
        if self._forced == "overload" or self._load > self.capacity:
            return self._status_frame(status | OVER_CAPACITY)
        if self._forced == "underload" or self._shown(net) < 0:
            return self._status_frame(status | UNDER_ZERO)
        if self._moving():
            if self.report_motion:
                return self._status_frame(status | MOTION)
            step = _WOBBLE_PATTERN[self._wobble_step % len(_WOBBLE_PATTERN)]
            self._wobble_step += 1
            net = max(net + self._amplitude * step / 10, Decimal(0))
        # Two integer digits at least, zero-padded, as the display's fixed field: "01.250".
        width = self.decimals + 3 if self.decimals else 2
        text = format(self._shown(net), f"0{width}.{self.decimals}f")
        return STX + text.encode("ascii") + (b"N" if self._tare else b"") + CR

    @staticmethod
    def _status_frame(status: int) -> bytes:
        return STX + b"?" + bytes([status]) + CR

    # -- the wire ----------------------------------------------------------------------------

    def _on_byte(self, byte: int) -> None:
        self.received.append(byte)
        if byte in (0x0D, 0x0A):
            return  # a host that ends its W with CR or CR LF: the protocol wants none
        if self._mute:
            return
        fault = self._faults.popleft() if self._faults else None
        if fault == "no_reply":
            return
        if byte == ord("W"):
            self._queue.append(_Pending(self._weight_reply, fault))
        else:
            self._queue.append(_Pending(lambda: self._status_frame(BAD_COMMAND), fault))

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
            arrives_at = now + self._delay
            if self._transit:
                arrives_at = max(arrives_at, self._transit[-1][0])
            self._transit.append((arrives_at, reply))

    def _deliver(self, now: float) -> float | None:
        while self._transit:
            arrives_at, reply = self._transit[0]
            if arrives_at > now:
                return arrives_at
            self._transit.popleft()
            self._emit(reply)
        return None

    def _emit(self, data: bytes) -> None:
        if self._master is None:
            return  # unplugged: nothing reaches the wire
        room = _MAX_PENDING_OUTPUT - len(self._outbox)
        self._outbox += data[: max(room, 0)]

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                actions, self._actions = self._actions, []
                for action in actions:
                    action()
                wait = self._fire_due(time.monotonic())
                master = self._master
                readers = [self._wake_r] + ([master] if master is not None else [])
                writers = [master] if master is not None and self._outbox else []
            try:
                readable, writable, _ = select.select(readers, writers, [], wait)
            except (OSError, ValueError):
                continue  # not expected (descriptors close only on this thread); look again
            with self._lock:
                if self._stopping:
                    return
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if master is not None and master == self._master:
                    if master in readable:
                        self._read_from(master)
                    if master in writable:
                        self._write_to(master)

    def _fire_due(self, now: float) -> float | None:
        """Do whatever is due now; return how long the loop may sleep."""
        wake_at: list[float] = []
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            if not self._connected:
                try:
                    self._plug_in()
                except OSError:  # no pty to be had just now; try again shortly
                    self._unplug()
                    self._reconnect_at = now + 0.1
        if self._reconnect_at is not None:
            wake_at.append(self._reconnect_at)
        self._answer(now)
        next_at = self._deliver(now)
        if next_at is not None:
            wake_at.append(next_at)
        return max(min(wake_at) - now, 0.0) if wake_at else None

    def _read_from(self, master: int) -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return
        for byte in data:
            self._on_byte(byte)
        self._answer(time.monotonic())
        self._deliver(time.monotonic())

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
        master, slave = os.openpty()
        self._master, self._slave = master, slave
        # Raw at once, before any reader opens the port: a cooked pty would turn CR into LF
        # and echo the driver's requests back at it.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.device_path = os.ttyname(slave)
        if self.link is not None:
            _point_symlink(self.link, self.device_path)
        self._connected = True

    def _unplug(self) -> None:
        self._connected = False
        self._queue.clear()
        self._transit.clear()
        self._outbox.clear()
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if self.link is not None and self.device_path is not None:
            _remove_symlink_to(self.link, self.device_path)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")


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


def run_cli(
    link: Path | None,
    *,
    weight: Decimal = Decimal(0),
    unit: str = "kg",
    decimals: int = 3,
    capacity: Decimal = Decimal(15),
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> None:
    """``jxc sim toledo-scale``: run a twin until SIGTERM or Ctrl-C, taking commands on stdin.

    Prints ``device: <pty>`` (and ``link: <path>``) first, so a script can find the port.
    After stdin ends the device stays up until the signal, like the other serial twins.
    """
    import signal  # noqa: PLC0415 - only the command needs it
    import sys  # noqa: PLC0415
    from decimal import InvalidOperation  # noqa: PLC0415

    source = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr

    class _Stop(Exception):  # noqa: N818 - a signal, not an error
        pass

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    signal.signal(signal.SIGTERM, stop)
    twin = Toledo8217Twin(link, weight=weight, unit=unit, decimals=decimals, capacity=capacity)
    try:
        print(f"device: {twin.device_path}", file=out)
        if link is not None:
            print(f"link: {link}", file=out)
        out.flush()
        for line in iter(source.readline, ""):
            text = line.strip()
            if not text:
                continue
            try:
                answer = apply_command(twin, text)
            except (ValueError, IndexError, InvalidOperation) as exc:
                print(f"not understood: {text!r}: {exc}", file=err)
                err.flush()
                continue
            if answer is not None:
                print(answer, file=out)
            out.flush()
        while True:
            signal.pause()
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        twin.close()
