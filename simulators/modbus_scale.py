"""A Modbus weight transmitter twin: a pymodbus server on loopback TCP and/or RTU over a pty.

It deliberately shares no code with ``device_drivers``: it reads the same profile format
(TOML) on its own and encodes its registers on its own, so a driver that misreads a word
order or an address shows up as a failing test instead of agreeing with itself.

The server is pymodbus 3.16's, built on its new datastore API (``SimDevice``/``SimData``);
every read goes through a ``SimDevice`` action that fills the registers from the simulated
platform at that moment, and every write to the command register zeroes or tares it. RTU
runs over two pty pairs bridged by the twin: the server owns one, the driver opens the other
(through a ``/dev/serial/by-id``-like symlink) as it would a USB RS-485 adapter. The bridge
is the cable, which is where garbage, cuts and an unplug happen.

Faults on command: a load that wobbles and then settles, overload, underload, an error bit,
the device vanishing and coming back, garbage or cut replies, slow replies, no reply, the
words of 32-bit values (or the bytes of every register) sent in the wrong order, and
replies with too few registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import threading
import tomllib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.closing import ClosedOnExit
from simulators.load import PlatformLoad
from simulators.pty_port import PtyPlug, PtyPort

__all__ = ["GARBAGE", "ModbusScaleTwin", "TwinProfile", "WireFault", "read_twin_profile"]

GARBAGE = b"\x7f\xf3\x00\xa5\x5a\x11\xfe\x02\x9c"
"""Line noise, as a wrong baud rate or a missing RS-485 termination produces it."""

WireFault = Literal["no_reply", "garbage", "cut", "bad_crc", "short"]

_REGISTERS_PER_TABLE_SLACK = 8
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_MODICON = {"holding": 40001, "input": 30001}
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Field:
    table: str
    address: int
    type: str
    word_order: str
    byte_order: str

    @property
    def count(self) -> int:
        return 1 if self.type.endswith("16") else 2


@dataclass(frozen=True)
class TwinProfile:
    """The part of a profile the twin needs, read independently of the driver."""

    weight: _Field
    decimals: int
    unit: str
    capacity: Decimal
    division: Decimal
    minimum: Decimal
    command_address: int | None
    """``None``: the profile has no ``[command]`` section, and every write is refused."""
    commands: Mapping[str, int]
    status_table: str | None = None
    status_address: int | None = None
    status_bits: Mapping[str, int] = field(default_factory=dict)
    tare: _Field | None = None


def read_twin_profile(source: str | Path | Mapping[str, Any]) -> TwinProfile:
    """A profile from a TOML file, its text, or an already parsed mapping."""
    if isinstance(source, Mapping):
        data: Mapping[str, Any] = source
    else:
        path = Path(source)
        text = path.read_text("utf-8") if path.suffix == ".toml" else str(source)
        data = tomllib.loads(text, parse_float=Decimal)
    numbering = data.get("numbering", "protocol")

    def wire(address: int, table: str) -> int:
        if numbering == "one_based":
            return address - 1
        if numbering == "modicon":
            base = _MODICON[table]
            return address - base if address < base * 10 - 9 else address - (base * 10 - 9)
        return address

    def field_of(section: Mapping[str, Any]) -> _Field:
        table = section.get("table", "holding")
        return _Field(
            table=table,
            address=wire(int(section["address"]), table),
            type=section["type"],
            word_order=section.get("word_order", "big"),
            byte_order=section.get("byte_order", "big"),
        )

    w = data["weight"]
    decimals = int(w["decimals"])
    capacity = Decimal(str(w["capacity"]))
    division = Decimal(str(w.get("division", Decimal(1).scaleb(-decimals))))
    status = data.get("status")
    command = data.get("command", {})
    return TwinProfile(
        weight=field_of(w),
        decimals=decimals,
        unit=w["unit"],
        capacity=capacity,
        division=division,
        minimum=Decimal(str(w.get("minimum", -capacity))),
        command_address=wire(int(command["address"]), "holding") if command else None,
        commands={k: int(command[k]) for k in ("zero", "tare", "clear_tare") if k in command},
        status_table=None if status is None else status.get("table", "holding"),
        status_address=None
        if status is None
        else wire(int(status["address"]), status.get("table", "holding")),
        status_bits={}
        if status is None
        else {k: int(v) for k, v in status.items() if k not in ("table", "address")},
        tare=field_of(data["tare"]) if "tare" in data else None,
    )


async def _shutdown(server: ModbusTcpServer | ModbusSerialServer) -> None:
    """Stop a pymodbus server: its listener and every connection it accepted.

    asyncio hands an accepted connection to the server a loop turn or two later; one that
    is still on its way when the listener closes would be left open for good (and keep
    answering for an "unplugged" device). So pending accepts are let through first, and
    a second sweep closes whatever arrived during the shutdown.
    """
    await asyncio.sleep(0.05)
    stop: Callable[[], Awaitable[None]] = server.shutdown
    await stop()
    await asyncio.sleep(0.05)
    for connection in list(server.active_connections.values()):
        connection.close()
    server.active_connections.clear()


def _crc16(frame: bytes) -> bytes:
    """Modbus RTU CRC (polynomial 0xA001, initial 0xFFFF), low byte first on the wire."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


class _Platform(PlatformLoad):
    """One simulated transmitter: the platform's load, with its profile and value faults.

    Forced states are ``overload``, ``underload`` and ``error`` (the status word's bit).
    """

    def __init__(self, profile: TwinProfile, weight: Decimal, clock: Callable[[], float]) -> None:
        super().__init__(profile.division, weight, clock=clock)
        self.p = profile
        self.swap_words = False
        self.swap_bytes = False

    def shown(self, value: Decimal) -> Decimal:
        # A transmitter's step may be 2 or 5 units of the last digit, not only 1.
        d = self.p.division
        q = (value / d).to_integral_value(ROUND_HALF_EVEN) * d
        q = q.quantize(Decimal(1).scaleb(-self.p.decimals))
        return q.copy_abs() if q == 0 else q

    def net_now(self, now: float) -> Decimal:
        net, _ = self.reading(now)
        return self.shown(net)

    def overloaded(self) -> bool:
        return self.over(self.p.capacity + 9 * self.p.division)

    def underloaded(self) -> bool:
        return self.forced == "underload" or self.net < self.p.minimum

    def status_word(self, now: float) -> int:
        bits = self.p.status_bits
        word = 0

        def put(name: str, on: bool) -> None:
            nonlocal word
            if name in bits and on:
                word |= 1 << bits[name]

        moving = self.moving(now)
        put("stable", not moving)
        put("motion", moving)
        put("overload", self.overloaded())
        put("underload", self.underloaded())
        put("zero", abs(self.gross) <= self.p.division / 4)
        put("net", self.tare != 0)
        put("error", self.forced == "error")
        return word

    def encode(self, f: _Field, value: Decimal) -> list[int]:
        if f.type == "float32":
            data = struct.pack(">f", float(value))
        else:
            raw = int(value.scaleb(self.p.decimals))
            bits = 16 * f.count
            signed = f.type.startswith("int")
            low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
            data = struct.pack(">" + _STRUCT[f.type], min(max(raw, low), high))
        words = [data[i : i + 2] for i in range(0, len(data), 2)]
        little_words = f.word_order == "little"
        if self.swap_words:
            little_words = not little_words
        if little_words:
            words.reverse()
        if (f.byte_order == "little") != self.swap_bytes:
            words = [w[::-1] for w in words]
        return [int.from_bytes(w, "big") for w in words]

    def fill(self, table: str, registers: list[int], now: float) -> None:
        """Write the register image of ``table`` as the device shows it now."""

        def put(f: _Field, value: Decimal) -> None:
            if f.table == table:
                registers[f.address : f.address + f.count] = self.encode(f, value)

        put(self.p.weight, self.net_now(now))
        if self.p.tare is not None:
            put(self.p.tare, self.shown(self.tare))
        if self.p.status_table == table and self.p.status_address is not None:
            registers[self.p.status_address] = self.status_word(now)

    def command(self, value: int, now: float) -> ExcCodes | None:
        """Carry out a written command, or the exception code a device would answer."""
        commands = self.p.commands
        refusal: ExcCodes | None = None
        if self.forced == "error":
            refusal = ExcCodes.DEVICE_FAILURE
        elif value == commands.get("clear_tare"):
            self.set_tare(Decimal(0))
        elif value not in (commands.get("zero"), commands.get("tare")):
            refusal = ExcCodes.ILLEGAL_VALUE
        elif self.moving(now):
            refusal = ExcCodes.DEVICE_BUSY  # both wait for a still load
        elif value == commands.get("zero"):
            if abs(self.load) > self.p.capacity * Decimal("0.02") or self.forced:
                refusal = ExcCodes.ILLEGAL_VALUE  # beyond the zero range a load is a load
            else:
                self.zero_here()
        elif self.shown(self.gross) < 0 or self.overloaded():
            refusal = ExcCodes.ILLEGAL_VALUE
        else:
            self.set_tare(self.shown(self.gross))
        return refusal


class ModbusScaleTwin(ClosedOnExit):
    """Simulated weight transmitters (one per unit id) behind one TCP port and/or RTU bus.

    ``tcp_port=0`` picks a free loopback port (see :attr:`tcp_address`); ``rtu=True`` makes
    an RTU bus whose device path (:attr:`device_path`, or the ``link`` symlink to it) the
    driver opens. Weights are gross, in the profile's unit. Methods that act on one
    transmitter take ``unit`` (the first unit id when left out).
    """

    def __init__(
        self,
        profile: str | Path | Mapping[str, Any],
        *,
        tcp_port: int | None = None,
        rtu: bool = False,
        link: Path | None = None,
        units: Iterable[int] = (1,),
        weight: Decimal = Decimal(0),
    ) -> None:
        if tcp_port is None and not rtu:
            raise ValueError("the twin needs a TCP port, an RTU bus or both")
        self.profile = read_twin_profile(profile)
        self.unit_ids = tuple(units)
        if not self.unit_ids:
            raise ValueError("at least one unit id")
        self.link = link
        self.requests: list[tuple[int, int, int, int]] = []
        """Every request served: (unit id, function code, address, count)."""
        self.overlaps = 0
        """Requests that arrived while another was being answered: an unserialized bus."""
        self._lock = threading.Lock()
        self._platforms = {u: _Platform(self.profile, weight, self._now) for u in self.unit_ids}
        self._delay = 0.0
        self._mute = False
        self._faults: deque[WireFault] = deque()
        self._in_flight = 0
        self._tcp_wanted = tcp_port is not None
        self._tcp_port = tcp_port or 0
        self._rtu_wanted = rtu
        self._tcp_server: ModbusTcpServer | None = None
        self._rtu_server: ModbusSerialServer | None = None
        self._bus: PtyPort | None = None  # the server's side of the cable
        self._wire = PtyPlug(link)  # the driver's side, where the cable is pulled
        self._connected = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="modbus-scale-twin", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._start())
        except BaseException:
            self.close()
            raise

    # -- what a test or an operator can do ----------------------------------------------

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        return ("127.0.0.1", self._tcp_port) if self._tcp_wanted else None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def device_path(self) -> str | None:
        """The RTU pty a driver opens (the latest one after a replug; ``None`` without RTU)."""
        return self._wire.device_path

    def net(self, unit: int | None = None) -> Decimal:
        """The settled net weight the transmitter shows."""
        with self._lock:
            p = self._platform(unit)
            return p.shown(p.net)

    def tare_weight(self, unit: int | None = None) -> Decimal:
        with self._lock:
            p = self._platform(unit)
            return p.shown(p.tare)

    def set_weight(self, value: Decimal, *, settle: float = 0.0, unit: int | None = None) -> None:
        """Put a gross load on the platform; with ``settle`` it swings that long first."""
        with self._lock:
            self._platform(unit).put(value, settle=settle)

    def wobble(
        self, seconds: float, amplitude: Decimal | None = None, *, unit: int | None = None
    ) -> None:
        """The load swings for ``seconds`` (motion flag on), then holds still."""
        with self._lock:
            self._platform(unit).wobble(seconds, amplitude)

    def overload(self, unit: int | None = None) -> None:
        self._force("overload", unit)

    def underload(self, unit: int | None = None) -> None:
        self._force("underload", unit)

    def device_error(self, unit: int | None = None) -> None:
        """Set the status word's error bit (a load-cell fault)."""
        self._force("error", unit)

    def swap_words(self, on: bool = True, *, unit: int | None = None) -> None:
        """Send 32-bit values in the other word order than the profile says."""
        with self._lock:
            self._platform(unit).swap_words = on

    def swap_bytes(self, on: bool = True, *, unit: int | None = None) -> None:
        """Send the two bytes of every register in the other order than the profile says."""
        with self._lock:
            self._platform(unit).swap_bytes = on

    def set_delay(self, seconds: float) -> None:
        """Answer every request this late (a slow gateway, a busy transmitter)."""
        with self._lock:
            self._delay = max(seconds, 0.0)

    def no_reply(self, count: int | None = 1) -> None:
        """Swallow the next ``count`` replies (``None``: until :meth:`clear_faults`)."""
        with self._lock:
            if count is None:
                self._mute = True
            else:
                self._faults.extend(["no_reply"] * count)

    def wire_fault(self, fault: WireFault, count: int = 1) -> None:
        """Damage the next ``count`` replies: ``garbage`` (noise instead), ``cut`` (the first
        half only), ``bad_crc`` (RTU: one CRC byte flipped), ``short`` (a well-formed reply
        with one register fewer than asked)."""
        with self._lock:
            self._faults.extend([fault] * count)

    def send_garbage(self, data: bytes = GARBAGE) -> None:
        """Put noise on the RTU line now, unasked."""

        async def send() -> None:
            master = self._wire.master
            if master is not None:
                with contextlib.suppress(OSError):
                    os.write(master, data)

        self._run(send())

    def clear_faults(self) -> None:
        """Back to healthy transmitters; loads, zeros and tares stay."""
        with self._lock:
            self._delay = 0.0
            self._mute = False
            self._faults.clear()
            for p in self._platforms.values():
                p.force(None)
                p.swap_words = False
                p.swap_bytes = False
                p.hold_still()

    def disconnect(self) -> None:
        """Vanish: the TCP listener and its connections close, the RTU cable is pulled."""
        self._run(self._unplug())

    def reconnect(self) -> None:
        """Come back: the same TCP port, a new pty behind the same link."""
        self._run(self._plug_in())

    def close(self) -> None:
        """Stop for good; idempotent."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._run(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    # -- the loop ----------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _now(self) -> float:
        """The loop's clock, which times every request: swings are timed by it too."""
        return self._loop.time()

    def _platform(self, unit: int | None) -> _Platform:
        return self._platforms[self.unit_ids[0] if unit is None else unit]

    def _force(self, what: str, unit: int | None) -> None:
        with self._lock:
            self._platform(unit).force(what)

    def _devices(self) -> list[SimDevice]:
        size = max(
            self.profile.weight.address + 2,
            (self.profile.status_address or 0) + 1,
            (self.profile.command_address or 0) + 1,
            (self.profile.tare.address + 2) if self.profile.tare else 0,
        )
        size += _REGISTERS_PER_TABLE_SLACK
        devices = []
        for unit in self.unit_ids:

            async def action(  # noqa: PLR0917 - the signature pymodbus calls
                function_code: int,
                start_address: int,
                address: int,
                count: int,
                registers: list[int],
                values: list[int] | list[bool] | None,
                unit: int = unit,
            ) -> ExcCodes | None:
                return await self._serve(
                    unit, function_code, address, count=count, registers=registers, values=values
                )

            def bits() -> list[SimData]:
                return [SimData(0, count=16, values=False, datatype=DataType.BITS)]

            def regs() -> list[SimData]:
                return [SimData(0, count=size, values=0, datatype=DataType.REGISTERS)]

            devices.append(
                SimDevice(id=unit, simdata=(bits(), bits(), regs(), regs()), action=action)
            )
        return devices

    async def _serve(
        self,
        unit: int,
        function_code: int,
        address: int,
        *,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code == 6 and values is None:
            return None  # pymodbus reading back a written register for the echo
        with self._lock:
            self.requests.append((unit, function_code, address, count))
            self._in_flight += 1
            if self._in_flight > 1:
                self.overlaps += 1
            delay = self._delay
        try:
            if delay:
                await asyncio.sleep(delay)
            now = self._loop.time()
            with self._lock:
                platform = self._platforms[unit]
                if values is None:
                    platform.fill("input" if function_code == 4 else "holding", registers, now)
                    return None
                if function_code == 6 and address == self.profile.command_address:
                    return platform.command(int(values[0]), now)
                return ExcCodes.ILLEGAL_ADDRESS  # everything else is read-only
        finally:
            with self._lock:
                self._in_flight -= 1

    def _mangle(self, sending: bool, packet: bytes, *, rtu: bool) -> bytes:
        """The server's outgoing frames pass here: where wire faults are applied."""
        if not sending:
            return packet
        with self._lock:
            if self._mute:
                return b""
            fault = self._faults.popleft() if self._faults else None
        damaged = {
            None: packet,
            "no_reply": b"",
            "garbage": GARBAGE,
            "cut": packet[: max(len(packet) // 2, 1)],
            # Over TCP there is no CRC to break; flipping a data byte would be a wrong value.
            "bad_crc": packet[:-1] + bytes([packet[-1] ^ 0x5A]) if rtu else packet,
        }
        if fault == "short":
            return self._shorten(packet, rtu=rtu)
        return damaged[fault]

    @staticmethod
    def _shorten(packet: bytes, *, rtu: bool) -> bytes:
        """A well-framed read reply that carries one register fewer than it should."""
        head = 1 if rtu else 7  # unit id, or the MBAP header
        pdu = packet[head:-2] if rtu else packet[head:]
        if len(pdu) < 4 or pdu[0] not in (3, 4):
            return packet
        pdu = bytes([pdu[0], pdu[1] - 2]) + pdu[2:-2]
        if rtu:
            frame = packet[:1] + pdu
            return frame + _crc16(frame)
        length = (len(pdu) + 1).to_bytes(2, "big")
        return packet[:4] + length + packet[6:7] + pdu

    async def _start(self) -> None:
        if self._rtu_wanted:
            self._bus = bus = PtyPort()
            self._rtu_server = ModbusSerialServer(
                self._devices(),
                port=bus.device_path,
                baudrate=19200,
                trace_packet=lambda s, p: self._mangle(s, p, rtu=True),
            )
            await self._rtu_server.serve_forever(background=True)
            self._loop.add_reader(bus.master, self._from_server)
        await self._plug_in()

    async def _plug_in(self) -> None:
        if self._connected:
            return
        if self._tcp_wanted:
            server = ModbusTcpServer(
                self._devices(),
                address=("127.0.0.1", self._tcp_port),
                trace_packet=lambda s, p: self._mangle(s, p, rtu=False),
            )
            await server.serve_forever(background=True)
            transport: Any = server.transport
            self._tcp_port = transport.sockets[0].getsockname()[1]
            self._tcp_server = server
        if self._rtu_wanted:
            self._loop.add_reader(self._wire.plug_in().master, self._from_driver)
        self._connected = True

    async def _unplug(self) -> None:
        self._connected = False
        if self._tcp_server is not None:
            server, self._tcp_server = self._tcp_server, None
            await _shutdown(server)
        if self._wire.port is not None:
            self._loop.remove_reader(self._wire.port.master)
            self._wire.unplug()

    async def _stop(self) -> None:
        await self._unplug()
        if self._rtu_server is not None:
            server, self._rtu_server = self._rtu_server, None
            await _shutdown(server)
        if self._bus is not None:
            bus, self._bus = self._bus, None
            self._loop.remove_reader(bus.master)
            bus.close()
        await asyncio.sleep(0)  # let closed transports run their callbacks
        # create_server resolves the host in the default executor: end its thread too.
        await self._loop.shutdown_default_executor()

    def _from_driver(self) -> None:
        self._pump(self._wire.port, self._bus)

    def _from_server(self) -> None:
        self._pump(self._bus, self._wire.port)

    @staticmethod
    def _pump(source: PtyPort | None, sink: PtyPort | None) -> None:
        """Copy what one side of the cable sent to the other; an unplugged end drops it."""
        if source is None:
            return
        try:
            data = os.read(source.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO while nobody holds the other end: nothing to carry
        if sink is not None and data:
            with contextlib.suppress(OSError):
                os.write(sink.master, data)
