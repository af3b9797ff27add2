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
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Literal

# The loop, the load and the by-id link work as for the other serial twins: one of each.
from simulators.load import UNITS, PlatformLoad
from simulators.serial_scale import SerialScaleTwin, buffer_output

__all__ = ["GARBAGE", "UNITS", "MtSicsScaleTwin"]

GARBAGE = b"\xf0\x00\x8c\x1f\xfe\x7f\x9a\x03\xe6"
"""Line noise as a wrong baud rate produces it; no CR or LF inside, so it stays one line."""

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

_MAX_COMMAND = 128

Fault = Literal["ES", "ET", "EL", "no_reply", "garbage", "half"]
Forced = Literal["overload", "underload", "busy"]


@dataclass
class _Pending:
    """A command received and not yet answered."""

    produce: Callable[[], bytes]
    """Computes the reply when it is sent, from the state at that moment."""
    give_up_at: float | None = None
    """For S, Z and T: the device waits for a still load until then, else answers at once."""
    mangle: str | None = None
    """A fault (a :data:`Fault`) injected into this reply on the way out."""


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


class MtSicsScaleTwin(SerialScaleTwin):
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
        super().__init__(PlatformLoad(self._division, self._to_display(weight, unit)), link)
        self._channels: list[_Channel] = []
        self._pty_wanted = pty
        self._tcp_wanted = tcp_port is not None
        self._listener: socket.socket | None = None
        self._tcp_port = tcp_port or 0
        self._start_loop("mtsics-scale-twin")

    # -- what a test or an operator can do ------------------------------------------------

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of the loopback listener, kept across disconnects."""
        return ("127.0.0.1", self._tcp_port) if self._tcp_wanted else None

    @property
    def tare_weight(self) -> Decimal:
        with self._lock:
            return self._shown(self._platform.tare)

    def set_weight(self, value: Decimal, unit: str | None = None, *, settle: float = 0.0) -> None:
        """Put a load on the platform (gross, in ``unit`` or the display unit).

        With ``settle`` the load swings for that many seconds first, as a box dropped on
        the platform does.
        """
        with self._lock:
            self._platform.put(self._to_display(value, unit or self.unit), settle=settle)
        self._wake()

    def busy(self) -> None:
        """Answer weighing, zero and tare commands with status ``I``, until cleared."""
        self._force("busy")

    def reply_error(self, code: Literal["ES", "ET", "EL"], count: int = 1) -> None:
        """Answer the next ``count`` commands with this general error instead."""
        self._queue_fault(code, count)

    def send_raw(self, data: bytes) -> None:
        """Put bytes on every open connection now, unasked."""
        with self._lock:
            for channel in self._channels:
                self._emit(channel, data)
        self._wake()

    def send_garbage(self) -> None:
        """Line noise, unasked, followed by CR LF."""
        self.send_raw(GARBAGE + b"\r\n")

    # -- the simulated balance --------------------------------------------------------------

    def _to_display(self, value: Decimal, unit: str) -> Decimal:
        if unit not in UNITS:
            raise ValueError(f"unknown unit {unit!r}")
        return value * UNITS[unit] / UNITS[self.unit]

    def _shown(self, value: Decimal) -> Decimal:
        return self._platform.shown(value)

    def _moving(self) -> bool:
        return self._platform.moving()

    @property
    def _forced(self) -> str | None:
        return self._platform.forced

    def _range_status(self) -> str | None:
        if self._platform.over(self.capacity):
            return "+"
        if self._platform.under(-self._zero_range):
            return "-"
        return None

    def _weight_text(self, value: Decimal) -> str:
        return f"{format(self._shown(value), 'f'):>10} {self.unit}"

    def _net_now(self) -> tuple[str, Decimal]:
        """Stable flag and displayed net value, swinging while the load moves."""
        value, moving = self._platform.reading()
        return ("D" if moving else "S"), value

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
        fault = self._next_fault()
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
        self._platform.set_tare(Decimal(0))
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
        return f"S S {self._weight_text(self._platform.net)}".encode()

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
        load = self._platform.load
        if forced == "overload" or (forced is None and load > self._zero_range):
            return f"{id_} +".encode()
        if forced == "underload" or load < -self._zero_range:
            return f"{id_} -".encode()
        self._platform.zero_here()  # as on the keypad: zeroing also drops the tare
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
        gross = self._shown(self._platform.gross)
        if gross < 0:
            return f"{id_} -".encode()
        self._platform.set_tare(gross)
        return f"{id_} {flag} {self._weight_text(gross)}".encode()

    def _tare_value(self, params: list[str]) -> bytes:
        if self._forced == "busy":
            return b"TA I"
        if not params:
            return f"TA A {self._weight_text(self._platform.tare)}".encode()
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
        self._platform.set_tare(value)
        return f"TA A {self._weight_text(value)}".encode()

    def _clear_tare(self) -> bytes:
        if self._forced == "busy":
            return b"TAC I"
        self._platform.set_tare(Decimal(0))
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
        mangle: str | None = None,
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
                return min(self._platform.settle_at, give_up_at)
            channel.queue.popleft()
            reply = head.produce() + b"\r\n"
            if head.mangle == "garbage":
                reply = GARBAGE + b"\r\n"
            elif head.mangle == "half":
                reply = reply[: max((len(reply) - 2) // 2, 1)]
            self._send_later(channel.transit, reply, now)
        return None

    def _still_waiting(self) -> bool:
        # A busy device answers "I" at once; otherwise it waits while the load moves.
        return self._forced != "busy" and self._moving()

    def _emit(self, channel: _Channel, data: bytes) -> None:
        buffer_output(channel.outbox, data)

    def _watched(self) -> tuple[list[int], list[int]]:
        readers = [c.fd for c in self._channels]
        if self._listener is not None:
            readers.append(self._listener.fileno())
        return readers, [c.fd for c in self._channels if c.outbox]

    def _ready(self, readable: list[int], writable: list[int]) -> None:
        for channel in list(self._channels):
            if channel.fd in readable:
                self._read_from(channel)
            if channel in self._channels and channel.fd in writable:
                self._write_to(channel)
        listener = self._listener
        if listener is not None and listener.fileno() in readable:
            self._accept(listener)

    def _due(self, now: float) -> list[float]:
        wake_at: list[float] = []
        for channel in self._channels:
            if channel.repeat_at is not None and not channel.queue:
                if channel.repeat_at <= now:
                    channel.repeat_at = now + self.sir_interval
                    self._send_later(channel.transit, self._si() + b"\r\n", now)
                wake_at.append(channel.repeat_at)
            answered = self._answer(channel, now)
            delivered = self._deliver(channel.transit, now, partial(buffer_output, channel.outbox))
            wake_at += [next_at for next_at in (answered, delivered) if next_at is not None]
        return wake_at

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
            self._channels.append(_Channel("pty", self._pty.plug_in().master))
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
        self._pty.unplug()
