"""An MT-SICS scale twin on a pseudo-terminal and/or a loopback TCP port.

It deliberately shares no code with ``device_drivers``: a twin built from the protocol
notes, not from the driver, is what exposes a driver that misreads them.

The twin plays the device side: it reads commands (ASCII lines ended by CR LF) and answers
as a Mettler Toledo balance would, from a simulated platform whose load a test or an
operator sets. Public simulators only ever answer ``S S``; this one also produces motion
(``S D`` for a while, then stable), overload, underload, a busy device, general errors, and
what a bad cable or a dying device does to the wire: noise, half replies, slow replies, no
reply, and the device vanishing and coming back.

Every reply is produced by one background thread, in order per connection, so a slow or
held-back reply delays the ones after it exactly as on a real single-threaded indicator.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Literal

# The by-id link is handled exactly as for the scanner twin: one implementation of that.
from simulators.scanner import _point_symlink, _remove_symlink_to

__all__ = ["GARBAGE", "UNITS", "MtSicsScaleTwin"]

GARBAGE = b"\xf0\x00\x8c\x1f\xfe\x7f\x9a\x03\xe6"
"""Line noise as a wrong baud rate produces it; no CR or LF inside, so it stays one line."""

UNITS: dict[str, Decimal] = {
    "mg": Decimal("0.001"),
    "g": Decimal(1),
    "kg": Decimal(1000),
    "lb": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}
"""Grams per unit; pound and ounce are exact by definition."""

COMMAND_LEVELS: tuple[tuple[int, str], ...] = (
    (0, "@"),
    (0, "I0"),
    (0, "I2"),
    (0, "I4"),
    (0, "S"),
    (0, "SI"),
    (0, "SIR"),
    (0, "Z"),
    (1, "T"),
    (1, "TA"),
    (1, "TAC"),
    (1, "TI"),
    (1, "ZI"),
)
"""What ``I0`` lists: the commands this twin implements, with their MT-SICS level."""

_WOBBLE_PATTERN = (9, -7, 5, -8, 6, -4, 7, -6, 3, -5)
"""Offsets (tenths of the amplitude) a swinging load shows, in turn: never the settled value."""

_MAX_COMMAND = 128
_MAX_PENDING_OUTPUT = 65536
"""What a device buffers for a reader that does not read; a UART drops the rest."""

Fault = Literal["ES", "ET", "EL", "no_reply", "garbage", "half"]
Forced = Literal["overload", "underload", "busy"]


@dataclass
class _Pending:
    """A command received and not yet answered."""

    produce: Callable[[], bytes]
    """Computes the reply when it is sent, from the state at that moment."""
    give_up_at: float | None = None
    """For S, Z and T: the device waits for a still load until then, else answers at once."""
    mangle: Fault | None = None
    """A fault injected into this reply on the way out."""


@dataclass
class _Channel:
    """One connection to the twin: the pty or one TCP client."""

    kind: Literal["pty", "tcp"]
    fd: int
    sock: socket.socket | None = None
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    queue: deque[_Pending] = field(default_factory=deque)
    """Commands answered strictly in order, as a single-threaded indicator does."""
    transit: deque[tuple[float, bytes]] = field(default_factory=deque)
    """Replies on their way through a slow link, with when each arrives; order is kept."""
    repeat_at: float | None = None
    """Next ``SIR`` reply, or ``None`` when not repeating."""


class MtSicsScaleTwin:
    """One simulated MT-SICS balance with a settable load and faults on command.

    ``link`` gets a symlink to the pty, like a ``/dev/serial/by-id`` name; the symlink
    survives the twin's simulated unplug and replug while the pty behind it changes, as
    when a USB adapter is pulled and plugged back in. ``tcp_port`` opens a loopback listener
    (``0`` picks a free port), as a serial device server in front of the indicator would.
    """

    def __init__(
        self,
        link: Path | None = None,
        *,
        pty: bool = True,
        tcp_port: int | None = None,
        weight: Decimal = Decimal(0),
        unit: str = "g",
        decimals: int = 2,
        capacity: Decimal = Decimal(5100),
        serial_number: str = "B912345678",
        model: str = "JXC-TWIN",
        stability_timeout: float = 3.0,
        sir_interval: float = 0.1,
    ) -> None:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        if not 0 <= decimals <= 6:
            raise ValueError("decimals must be 0..6")
        if not pty and tcp_port is None:
            raise ValueError("the twin needs a pty, a TCP port or both")
        self.unit = unit
        self.decimals = decimals
        self.capacity = capacity
        self.serial_number = serial_number
        self.model = model
        self.stability_timeout = stability_timeout
        self.sir_interval = sir_interval
        self.link = link
        self.received: list[str] = []
        """Every command line received, in order, for tests to assert on."""

        self._division = Decimal(1).scaleb(-decimals)
        self._zero_range = capacity * Decimal("0.02")
        self._lock = threading.RLock()
        self._load = self._to_display(weight, unit)
        self._zero = Decimal(0)
        self._tare = Decimal(0)
        self._settle_at = 0.0
        self._amplitude = self._division * 20
        self._wobble_step = 0
        self._forced: Forced | None = None
        self._faults: deque[Fault] = deque()
        self._mute = False
        self._delay = 0.0
        self._channels: list[_Channel] = []
        self._actions: list[Callable[[], None]] = []
        self._open_connections(pty=pty, tcp_port=tcp_port)

    def _open_connections(self, *, pty: bool, tcp_port: int | None) -> None:
        self._pty_wanted = pty
        self._master: int | None = None
        self._slave: int | None = None
        self.device_path: str | None = None
        self._tcp_wanted = tcp_port is not None
        self._listener: socket.socket | None = None
        self._tcp_port = tcp_port or 0
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
        self._thread = threading.Thread(target=self._run, name="mtsics-scale-twin", daemon=True)
        self._thread.start()

    def __enter__(self) -> MtSicsScaleTwin:
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
    def tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the loopback listener, kept across disconnects."""
        return ("127.0.0.1", self._tcp_port) if self._tcp_wanted else None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def net(self) -> Decimal:
        """The net weight the display shows when the load holds still."""
        with self._lock:
            return self._shown(self._load - self._zero - self._tare)

    @property
    def tare_weight(self) -> Decimal:
        with self._lock:
            return self._shown(self._tare)

    def set_weight(self, value: Decimal, unit: str | None = None, *, settle: float = 0.0) -> None:
        """Put a load on the platform (gross, in ``unit`` or the display unit).

        With ``settle`` the load swings for that many seconds first, as a box dropped on
        the platform does.
        """
        with self._lock:
            self._load = self._to_display(value, unit or self.unit)
            if settle > 0:
                self._start_wobble(settle, None)
        self._wake()

    def wobble(self, seconds: float, amplitude: Decimal | None = None) -> None:
        """Make the load swing for ``seconds``, then hold still at its value."""
        with self._lock:
            self._start_wobble(seconds, amplitude)
        self._wake()

    def overload(self) -> None:
        """Report overload whatever the load, until :meth:`clear_faults`."""
        self._force("overload")

    def underload(self) -> None:
        """Report underload whatever the load, until :meth:`clear_faults`."""
        self._force("underload")

    def busy(self) -> None:
        """Answer weighing, zero and tare commands with status ``I``, until cleared."""
        self._force("busy")

    def reply_error(self, code: Literal["ES", "ET", "EL"], count: int = 1) -> None:
        """Answer the next ``count`` commands with this general error instead."""
        self._queue_fault(code, count)

    def no_reply(self, count: int | None = 1) -> None:
        """Swallow the next ``count`` commands without a word (``None``: until cleared)."""
        if count is None:
            with self._lock:
                self._mute = True
            return
        self._queue_fault("no_reply", count)

    def garble_replies(self, count: int = 1) -> None:
        """Replace the next ``count`` replies by line noise, as a bad cable does."""
        self._queue_fault("garbage", count)

    def cut_replies(self, count: int = 1) -> None:
        """Send only the first half of the next ``count`` replies, and no terminator."""
        self._queue_fault("half", count)

    def set_delay(self, seconds: float) -> None:
        """Hold every reply back this long (a slow bridge, a busy indicator)."""
        with self._lock:
            self._delay = max(seconds, 0.0)

    def clear_faults(self) -> None:
        """Back to a healthy device; the load, zero and tare stay as they are."""
        with self._lock:
            self._forced = None
            self._faults.clear()
            self._mute = False
            self._delay = 0.0
            self._settle_at = 0.0
        self._wake()

    def send_raw(self, data: bytes) -> None:
        """Put bytes on every open connection now, unasked."""
        with self._lock:
            for channel in self._channels:
                self._emit(channel, data)
        self._wake()

    def send_garbage(self) -> None:
        """Line noise, unasked, followed by CR LF."""
        self.send_raw(GARBAGE + b"\r\n")

    def disconnect(self, seconds: float | None = None) -> None:
        """Vanish: close the pty (and its link) and drop TCP connections and the listener.

        With ``seconds`` the device comes back by itself after that long, on a new pty behind
        the same link and on the same TCP port; otherwise call :meth:`reconnect`.
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
        """Run ``action`` on the loop thread between two ``select`` calls, and wait for it.

        Descriptors are only ever closed there: one closed while ``select`` holds it stays
        alive in the kernel until ``select`` returns, and a listener closed that way still
        accepts a connection, which is not what an unplugged device does.
        """
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

    # -- the simulated balance --------------------------------------------------------------

    def _to_display(self, value: Decimal, unit: str) -> Decimal:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        return value * UNITS[unit] / UNITS[self.unit]

    def _shown(self, value: Decimal) -> Decimal:
        shown = value.quantize(self._division)
        return shown.copy_abs() if shown == 0 else shown  # no "-0.00" on a display

    def _start_wobble(self, seconds: float, amplitude: Decimal | None) -> None:
        self._settle_at = time.monotonic() + seconds
        if amplitude is not None:
            self._amplitude = amplitude

    def _moving(self) -> bool:
        return time.monotonic() < self._settle_at

    def _force(self, forced: Forced) -> None:
        with self._lock:
            self._forced = forced

    def _queue_fault(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def _gross(self) -> Decimal:
        return self._load - self._zero

    def _range_status(self) -> str | None:
        if self._forced == "overload" or self._gross() > self.capacity:
            return "+"
        if self._forced == "underload" or self._gross() < -self._zero_range:
            return "-"
        return None

    def _weight_text(self, value: Decimal) -> str:
        return f"{format(self._shown(value), 'f'):>10} {self.unit}"

    def _net_now(self) -> tuple[str, Decimal]:
        """Stable flag and displayed net value, swinging while the load moves."""
        net = self._load - self._zero - self._tare
        if not self._moving():
            return "S", net
        step = _WOBBLE_PATTERN[self._wobble_step % len(_WOBBLE_PATTERN)]
        self._wobble_step += 1
        return "D", net + self._amplitude * step / 10

    # -- commands ----------------------------------------------------------------------------

    def _on_line(self, channel: _Channel, line: bytes) -> None:
        channel.repeat_at = None  # any command ends an SIR stream
        if not line.endswith(b"\r"):
            self._queue(channel, lambda: b"ES")  # MT-SICS wants CR LF, not a bare LF
            return
        body = line[:-1]
        if any(b < 0x20 or b > 0x7E for b in body):
            self._queue(channel, lambda: b"ET")  # what a parity or baud error looks like
            return
        text = body.decode("ascii")
        self.received.append(text)
        name, *params = text.split(" ")
        if self._mute:
            return
        fault = self._faults.popleft() if self._faults else None
        if fault == "no_reply":
            return
        if fault in ("ES", "ET", "EL"):
            code = fault.encode()
            self._queue(channel, lambda: code)
            return
        if name == "@":
            self._queue(channel, self._reset(channel, params), mangle=fault)
            return
        produce, waits = self._command(channel, name, params)
        give_up_at = time.monotonic() + self.stability_timeout if waits else None
        self._queue(channel, produce, give_up_at=give_up_at, mangle=fault)

    def _command(
        self, channel: _Channel, name: str, params: list[str]
    ) -> tuple[Callable[[], bytes], bool]:
        """What to answer (computed when the answer goes out), and whether it waits for a
        still load first."""
        simple: dict[str, Callable[[], bytes]] = {
            "SI": self._si,
            "ZI": self._zero_immediately,
            "TI": self._tare_immediately,
            "TAC": self._clear_tare,
            "I0": self._list_commands,
            "I2": self._balance_data,
            "I4": self._serial_number_reply,
        }
        waiting: dict[str, Callable[[], bytes]] = {
            "S": self._stable_weight,
            "Z": self._zero_stable,
            "T": self._tare_stable,
        }
        if name == "TA":
            return (lambda: self._tare_value(params)), False
        if name not in simple and name not in waiting and name != "SIR":
            return (lambda: b"ES"), False
        if params:
            return (lambda: b"EL"), False
        if name == "SIR":
            channel.repeat_at = time.monotonic() + self.sir_interval
            return self._si, False
        if name in waiting:
            return waiting[name], True
        return simple[name], False

    def _reset(self, channel: _Channel, params: list[str]) -> Callable[[], bytes]:
        """``@``: cancel everything pending here, back to the power-on state without zeroing.

        Power-on means no tare, which is why a driver must not use ``@`` casually.
        """
        channel.queue.clear()  # replies already on the wire still arrive
        channel.repeat_at = None
        if params:
            return lambda: b"EL"
        self._tare = Decimal(0)
        return self._serial_number_reply

    def _serial_number_reply(self) -> bytes:
        return f'I4 A "{self.serial_number}"'.encode()

    def _balance_data(self) -> bytes:
        return f'I2 A "{self.model} {format(self.capacity, "f")} {self.unit}"'.encode()

    def _si(self) -> bytes:
        if self._forced == "busy":
            return b"S I"
        if (out := self._range_status()) is not None:
            return f"S {out}".encode()
        flag, value = self._net_now()
        return f"S {flag} {self._weight_text(value)}".encode()

    def _stable_weight(self) -> bytes:
        if self._forced == "busy" or self._moving():
            return b"S I"  # the device's own wait for stability ran out
        if (out := self._range_status()) is not None:
            return f"S {out}".encode()
        return f"S S {self._weight_text(self._load - self._zero - self._tare)}".encode()

    def _zero_stable(self) -> bytes:
        if self._forced == "busy" or self._moving():
            return b"Z I"
        return self._zero_now("Z", "A")

    def _zero_immediately(self) -> bytes:
        if self._forced == "busy":
            return b"ZI I"
        return self._zero_now("ZI", "D" if self._moving() else "S")

    def _zero_now(self, id_: str, done: str) -> bytes:
        # Zero is only allowed near the power-on zero: beyond that the load is a load.
        forced = self._forced if self._forced in ("overload", "underload") else None
        if forced == "overload" or (forced is None and self._load > self._zero_range):
            return f"{id_} +".encode()
        if forced == "underload" or self._load < -self._zero_range:
            return f"{id_} -".encode()
        self._zero = self._load
        self._tare = Decimal(0)  # as on the keypad: zeroing also drops the tare
        return f"{id_} {done}".encode()

    def _tare_stable(self) -> bytes:
        if self._forced == "busy" or self._moving():
            return b"T I"
        return self._tare_now("T", "S")

    def _tare_immediately(self) -> bytes:
        if self._forced == "busy":
            return b"TI I"
        return self._tare_now("TI", "D" if self._moving() else "S")

    def _tare_now(self, id_: str, flag: str) -> bytes:
        if (out := self._range_status()) is not None:
            return f"{id_} {out}".encode()
        gross = self._shown(self._gross())
        if gross < 0:
            return f"{id_} -".encode()
        self._tare = gross
        return f"{id_} {flag} {self._weight_text(gross)}".encode()

    def _tare_value(self, params: list[str]) -> bytes:
        if self._forced == "busy":
            return b"TA I"
        if not params:
            return f"TA A {self._weight_text(self._tare)}".encode()
        if len(params) != 2:
            return b"EL"
        try:
            value = Decimal(params[0])
        except InvalidOperation:
            return b"TA L"
        if (
            not value.is_finite()
            or params[1] != self.unit
            or not 0 <= value <= self.capacity
            or value != value.quantize(self._division)
        ):
            return b"TA L"
        self._tare = value
        return f"TA A {self._weight_text(value)}".encode()

    def _clear_tare(self) -> bytes:
        if self._forced == "busy":
            return b"TAC I"
        self._tare = Decimal(0)
        return b"TAC A"

    def _list_commands(self) -> bytes:
        last = len(COMMAND_LEVELS) - 1
        return b"\r\n".join(
            f'I0 {"A" if i == last else "B"} {level} "{name}"'.encode()
            for i, (level, name) in enumerate(COMMAND_LEVELS)
        )

    # -- the wire ----------------------------------------------------------------------------

    def _queue(
        self,
        channel: _Channel,
        produce: Callable[[], bytes],
        *,
        give_up_at: float | None = None,
        mangle: Fault | None = None,
    ) -> None:
        channel.queue.append(_Pending(produce, give_up_at, mangle))

    def _answer(self, channel: _Channel, now: float) -> float | None:
        """Answer every command at the head of the queue that can be; when to look again.

        The reply is computed now, from the state now, and then spends the configured delay
        in transit: a slow link delivers an old weight late, it does not weigh again.
        """
        while channel.queue:
            head = channel.queue[0]
            give_up_at = head.give_up_at
            if give_up_at is not None and now < give_up_at and self._still_waiting():
                return min(self._settle_at, give_up_at)
            channel.queue.popleft()
            reply = head.produce() + b"\r\n"
            if head.mangle == "garbage":
                reply = GARBAGE + b"\r\n"
            elif head.mangle == "half":
                reply = reply[: max((len(reply) - 2) // 2, 1)]
            self._send_later(channel, reply, now)
        return None

    def _send_later(self, channel: _Channel, reply: bytes, now: float) -> None:
        arrives_at = now + self._delay
        if channel.transit:
            arrives_at = max(arrives_at, channel.transit[-1][0])
        channel.transit.append((arrives_at, reply))

    def _deliver(self, channel: _Channel, now: float) -> float | None:
        while channel.transit:
            arrives_at, reply = channel.transit[0]
            if arrives_at > now:
                return arrives_at
            channel.transit.popleft()
            self._emit(channel, reply)
        return None

    def _still_waiting(self) -> bool:
        # A busy device answers "I" at once; otherwise it waits while the load moves.
        return self._forced != "busy" and self._moving()

    def _emit(self, channel: _Channel, data: bytes) -> None:
        room = _MAX_PENDING_OUTPUT - len(channel.outbox)
        channel.outbox += data[: max(room, 0)]

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                actions, self._actions = self._actions, []
                for action in actions:
                    action()
                wait = self._fire_due(time.monotonic())
                readers = [self._wake_r, *(c.fd for c in self._channels)]
                if self._listener is not None:
                    readers.append(self._listener.fileno())
                writers = [c.fd for c in self._channels if c.outbox]
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
                for channel in list(self._channels):
                    if channel.fd in readable:
                        self._read_from(channel)
                    if channel in self._channels and channel.fd in writable:
                        self._write_to(channel)
                listener = self._listener
                if listener is not None and listener.fileno() in readable:
                    self._accept(listener)

    def _fire_due(self, now: float) -> float | None:
        """Do whatever is due now; return how long the loop may sleep."""
        wake_at: list[float] = []
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            if not self._connected:
                try:
                    self._plug_in()
                except OSError:  # the port is still held by someone; try again shortly
                    self._unplug()
                    self._reconnect_at = now + 0.1
        if self._reconnect_at is not None:
            wake_at.append(self._reconnect_at)
        for channel in self._channels:
            if channel.repeat_at is not None and not channel.queue:
                if channel.repeat_at <= now:
                    channel.repeat_at = now + self.sir_interval
                    self._send_later(channel, self._si() + b"\r\n", now)
                wake_at.append(channel.repeat_at)
            for next_at in (self._answer(channel, now), self._deliver(channel, now)):
                if next_at is not None:
                    wake_at.append(next_at)
        return max(min(wake_at) - now, 0.0) if wake_at else None

    def _read_from(self, channel: _Channel) -> None:
        try:
            if channel.sock is not None:
                data = channel.sock.recv(4096)
                if not data:
                    self._drop(channel)
                    return
            else:
                data = os.read(channel.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            if channel.sock is not None:
                self._drop(channel)
            return
        for byte in data:
            if byte == 0x0A:
                line, channel.inbox = bytes(channel.inbox), bytearray()
                self._on_line(channel, line)
            elif len(channel.inbox) < _MAX_COMMAND:
                channel.inbox.append(byte)

    def _write_to(self, channel: _Channel) -> None:
        try:
            if channel.sock is not None:
                sent = channel.sock.send(channel.outbox)
            else:
                sent = os.write(channel.fd, channel.outbox)
        except BlockingIOError:
            return
        except OSError:
            if channel.sock is not None:
                self._drop(channel)
            else:
                channel.outbox.clear()
            return
        del channel.outbox[:sent]

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        self._channels.append(_Channel("tcp", sock.fileno(), sock))

    def _drop(self, channel: _Channel) -> None:
        if channel in self._channels:
            self._channels.remove(channel)
        if channel.sock is not None:
            with contextlib.suppress(OSError):
                channel.sock.close()

    def _plug_in(self) -> None:
        if self._pty_wanted:
            master, slave = os.openpty()
            self._master, self._slave = master, slave
            # Raw at once, before any reader opens the port: a cooked pty would turn CR into
            # LF and echo the driver's commands back at it.
            tty.setraw(slave)
            os.set_blocking(master, False)
            self.device_path = os.ttyname(slave)
            self._channels.append(_Channel("pty", master))
            if self.link is not None:
                _point_symlink(self.link, self.device_path)
        if self._tcp_wanted:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self._tcp_port))
                listener.listen(4)
            except OSError:
                listener.close()
                raise
            listener.setblocking(False)
            self._tcp_port = listener.getsockname()[1]
            self._listener = listener
        self._connected = True

    def _unplug(self) -> None:
        self._connected = False
        for channel in list(self._channels):
            self._drop(channel)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
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
