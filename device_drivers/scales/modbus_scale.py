"""A Modbus weight transmitter (TCP or RTU over RS-485), driven through a register profile.

What the registers mean is the profile and the codec in
:mod:`device_drivers.scales.modbus_map`; how requests travel is pymodbus's synchronous
clients, which this driver wraps in a :class:`ModbusBus`: one connection and one lock. The
driver is synchronous like :class:`~device_drivers.scales.mtsics_scale.MtSicsScale` and
behaves like it towards the station: it opens lazily, reopens with backoff through
:class:`~device_drivers.link.LinkHealth` after the device goes away, and raises nothing but
:class:`~device_drivers.scales.errors.ScaleError` subclasses.

RS-485 allows one request at a time on a wire, and several transmitters (unit ids) usually
share one. Drivers for the same serial port therefore share one :class:`ModbusBus` (and so
one open port and one lock); it is looked up by the port's path as configured, which is why
the same by-id path must be used for every unit on a bus. The line settings, reply timeout
included, belong to the bus and must agree between its units.

A reply that arrives after its request timed out is the classic RS-485 trap: RTU frames
carry no transaction id, so it would be taken for the answer to the next request, a weight
from the past. After a timeout on a serial bus the next request first waits (up to one reply
timeout) for the line to fall silent and drops what came. Over TCP the transaction id
already tells late replies apart.

Garbage (a bad CRC, a truncated frame, a reply with the wrong number of registers, values
the profile cannot mean) is counted under ``garbage`` and logged, never returned. Modbus
exception responses are well-formed refusals and map onto the typed errors: illegal
function or address is ``ES`` (the profile does not match the device), illegal value or
device failure ``EL``, acknowledge/busy :class:`ScaleBusyError`, a gateway whose target did
not answer :class:`ScaleTimeoutError`.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from device_drivers.errors import DeviceConfigError
from device_drivers.options import config_from_options
from device_drivers.scales.base import Weight, WeightReading
from device_drivers.scales.config import (
    check_address,
    check_positive,
    check_reconnect,
    check_serial,
    check_stable,
    tcp_endpoint,
)
from device_drivers.scales.errors import (
    ScaleBusyError,
    ScaleCommandError,
    ScaleError,
    ScaleOverloadError,
    ScaleTimeoutError,
    ScaleUnavailableError,
    ScaleUnderloadError,
)
from device_drivers.scales.health import count_problem, counting_outcome, scale_link
from device_drivers.scales.modbus_map import (
    Commands,
    FieldName,
    Measurement,
    RegisterDecodeError,
    RegisterProfile,
    RegisterTable,
    builtin_profile,
    decode_measurement,
    load_profile,
)
from device_drivers.scales.stable import StableMode, StableReader, StableRun
from device_drivers.status import DeviceStatus
from device_drivers.transport import Parity

__all__ = [
    "ModbusBus",
    "ModbusScale",
    "ModbusScaleConfig",
    "ScaleDeviceFaultError",
    "ScaleGarbageError",
    "StableMode",
    "create_modbus_scale",
]

log = logging.getLogger("device_drivers.scale")

_DEGRADED_AFTER_GARBAGE = 3
_DEGRADED_AFTER_TIMEOUTS = 2
_MAX_BLOCK_SPAN = 32
"""Registers of one table read in one request when the fields lie this close together, so
weight and status come from the same instant; farther apart they are read one by one."""
_QUIET_AFTER_LATE_BYTES = 0.02
_OUTCOME_REASONS = frozenset(
    {"overload", "underload", "motion", "busy", "syntax", "logical", "transmission"}
)
"""Counted when a public method gives up with them; timeouts, garbage and outages are counted
where they happen, once per occurrence."""

_R = TypeVar("_R")


class ScaleGarbageError(ScaleError):
    """Something arrived that is not a usable reply: a bad CRC, a cut frame, a reply of the
    wrong size, or register values the profile cannot mean (a wrong word order, typically)."""

    default_reason = "garbage"
    retryable = True


class ScaleDeviceFaultError(ScaleError):
    """The transmitter's status word has its error bit set (load cell or converter fault)."""

    default_reason = "logical"


_STABLE_RETRY = (ScaleGarbageError, ScaleBusyError, ScaleTimeoutError, ScaleUnavailableError)
"""What a stable read polls again after: garbage, a busy device, silence, a lost link.
Overload, underload, a device fault and refusals end it at once."""


class _SyncClient(Protocol):
    """The part of pymodbus's synchronous clients the driver uses."""

    @property
    def connected(self) -> bool: ...

    def connect(self) -> bool: ...

    def close(self) -> None: ...

    def read_holding_registers(
        self,
        address: int,
        *,
        count: int = 1,
        device_id: int = 1,
        no_response_expected: bool = False,
    ) -> ModbusPDU: ...

    def read_input_registers(
        self,
        address: int,
        *,
        count: int = 1,
        device_id: int = 1,
        no_response_expected: bool = False,
    ) -> ModbusPDU: ...

    def write_register(
        self, address: int, value: int, *, device_id: int = 1, no_response_expected: bool = False
    ) -> ModbusPDU: ...


@dataclass(frozen=True, slots=True)
class ModbusScaleConfig:
    """How one transmitter is reached, which register map it has, and how patient to be.

    ``address`` is ``tcp://host:port`` for Modbus TCP, or a serial port for Modbus RTU (use a
    stable ``/dev/serial/by-id/...`` name, not ``/dev/ttyUSB0``). ``profile`` is a shipped
    profile's name, a path to a TOML file, or a parsed :class:`RegisterProfile`.
    ``reply_timeout`` bounds each request and may be well below one second; a stable read may
    overrun its own timeout by at most one reply timeout, since a request on the wire is not
    abandoned half-way.
    """

    device_id: str
    address: str | os.PathLike[str]
    profile: RegisterProfile | str | os.PathLike[str]
    unit_id: int = 1
    baudrate: int = 19200
    bytesize: int = 8
    parity: Parity = "N"
    stopbits: int = 1
    reply_timeout: float = 0.5
    stable_mode: StableMode = "device"
    stable_readings: int = 3
    poll_interval: float = 0.05
    reconnect_min_delay: float = 0.1
    reconnect_max_delay: float = 2.0
    register_map: RegisterProfile = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = self.device_id
        check_address(name, self.address)
        if isinstance(self.unit_id, bool) or not isinstance(self.unit_id, int):
            raise DeviceConfigError(f"{name}: unit_id must be an integer")
        if not 1 <= self.unit_id <= 247:
            raise DeviceConfigError(f"{name}: unit_id must be 1..247, got {self.unit_id}")
        check_serial(
            name, self.baudrate, self.bytesize, self.parity, self.stopbits, bytesizes=(7, 8)
        )
        check_stable(name, self.stable_mode, self.stable_readings)
        check_positive(name, reply_timeout=self.reply_timeout, poll_interval=self.poll_interval)
        check_reconnect(name, self.reconnect_min_delay, self.reconnect_max_delay)
        profile = self._resolve_profile()
        if self.stable_mode == "device" and not profile.has_stable_flag():
            raise DeviceConfigError(
                f"{name}: profile {profile.name} has no stable or motion bit; "
                "use stable_mode = consecutive"
            )
        object.__setattr__(self, "register_map", profile)

    def _resolve_profile(self) -> RegisterProfile:
        if isinstance(self.profile, RegisterProfile):
            return self.profile
        text = os.fspath(self.profile)
        if not text:
            raise DeviceConfigError(f"{self.device_id}: profile must not be empty")
        if text.endswith(".toml") or os.sep in text:
            return load_profile(Path(text))
        return builtin_profile(text)

    def tcp_endpoint(self) -> tuple[str, int] | None:
        """``(host, port)`` for a Modbus TCP address, ``None`` for a serial port."""
        return tcp_endpoint(self.address)

    def line_settings(self) -> tuple[int, int, str, int, float]:
        """What every unit on one serial bus must agree on."""
        return (self.baudrate, self.bytesize, self.parity, self.stopbits, self.reply_timeout)


class ModbusBus:
    """One Modbus connection and the lock that keeps one request at a time on it.

    The owner of the lock may open, use and close the connection; ``generation`` counts
    opens, so each driver on a shared bus notices a reopen another driver made and reports
    its own link as connected again.
    """

    def __init__(
        self,
        name: str,
        make_client: Callable[[Callable[[bool, bytes], bytes]], _SyncClient],
        *,
        serial_line: bool,
        reply_timeout: float,
        settings: tuple[object, ...] = (),
    ) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.serial_line = serial_line
        self.reply_timeout = reply_timeout
        self.settings = settings
        self.generation = 0
        self.reply_owed = False
        """A request timed out on a serial line; its answer may still come."""
        self.units: set[int] = set()
        self.last_received = b""
        """The receive buffer as pymodbus last framed it: the raw reply after a success."""
        self._make_client = make_client
        self._client: _SyncClient | None = None

    @property
    def client(self) -> _SyncClient:
        if self._client is None:
            raise ConnectionException(f"{self.name} is not open")
        return self._client

    def is_open(self) -> bool:
        return self._client is not None and self._client.connected

    def open(self) -> str | None:
        """Open the connection; ``None`` on success, else why not."""
        self.close()
        client = self._make_client(self._trace)
        try:
            ok = client.connect()
        except Exception as exc:  # pymodbus and pyserial raise undocumented things here
            ok, detail = False, f"cannot open {self.name}: {exc}"
        else:
            detail = f"cannot open {self.name}"
        if not ok:
            with contextlib.suppress(Exception):
                client.close()
            return detail
        self._client = client
        self.generation += 1
        self.reply_owed = False
        return None

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def begin(self) -> bytes:
        """Before a request: forget the last reply; on a serial line wait out a late one and
        return any unasked bytes found waiting (noise the caller counts)."""
        self.last_received = b""
        if not self.serial_line:
            return b""
        if self.reply_owed:
            self._drain_late_reply()
        self.reply_owed = False
        port = getattr(self._client, "socket", None)
        try:
            waiting = int(getattr(port, "in_waiting", 0) or 0)
            return bytes(port.read(waiting)) if port is not None and waiting else b""
        except (OSError, ValueError):
            return b""  # the request that follows finds out the port is gone

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self.last_received = bytes(data)
        return data

    def _drain_late_reply(self) -> None:
        port = getattr(self._client, "socket", None)
        fileno = getattr(port, "fileno", None)
        if port is None or fileno is None:
            return
        dropped = b""
        give_up_at = time.monotonic() + self.reply_timeout
        wait = self.reply_timeout
        try:
            while wait > 0:
                if not select.select([fileno()], [], [], wait)[0]:
                    break
                dropped += port.read(max(port.in_waiting, 1))
                # A frame arrives in one burst; once it has, only a short silence is awaited.
                wait = min(_QUIET_AFTER_LATE_BYTES, give_up_at - time.monotonic())
        except (OSError, ValueError):
            return  # the request that follows finds out the port is gone, and says so
        if dropped:
            log.info(
                "scale bus %s: dropped a late reply %r",
                self.name,
                dropped,
                extra={"event": "late_reply"},
            )


_RTU_BUSES: dict[str, ModbusBus] = {}
_RTU_BUSES_LOCK = threading.Lock()


def _acquire_bus(config: ModbusScaleConfig) -> ModbusBus:
    endpoint = config.tcp_endpoint()
    if endpoint is not None:
        host, port = endpoint

        def make_tcp(trace: Callable[[bool, bytes], bytes]) -> _SyncClient:
            client: _SyncClient = ModbusTcpClient(
                host, port=port, timeout=config.reply_timeout, retries=0, trace_packet=trace
            )
            return client

        bus = ModbusBus(
            f"tcp://{host}:{port}",
            make_tcp,
            serial_line=False,
            reply_timeout=config.reply_timeout,
        )
        bus.units.add(config.unit_id)
        return bus
    key = os.path.abspath(os.fspath(config.address))
    settings = config.line_settings()
    with _RTU_BUSES_LOCK:
        shared = _RTU_BUSES.get(key)
        if shared is None:
            baudrate, bytesize, parity, stopbits, timeout = settings

            def make_rtu(trace: Callable[[bool, bytes], bytes]) -> _SyncClient:
                client: _SyncClient = ModbusSerialClient(
                    key,
                    framer=FramerType.RTU,
                    baudrate=baudrate,
                    bytesize=bytesize,
                    parity=parity,
                    stopbits=stopbits,
                    timeout=timeout,
                    retries=0,
                    trace_packet=trace,
                )
                return client

            shared = ModbusBus(
                key,
                make_rtu,
                serial_line=True,
                reply_timeout=config.reply_timeout,
                settings=settings,
            )
            _RTU_BUSES[key] = shared
        elif shared.settings != settings:
            raise DeviceConfigError(
                f"{config.device_id}: bus {key} is already open with baudrate, bytesize, "
                f"parity, stopbits, reply_timeout = {shared.settings}; every unit on one bus "
                f"needs the same, got {settings}"
            )
        if config.unit_id in shared.units:
            raise DeviceConfigError(
                f"{config.device_id}: unit id {config.unit_id} is already in use on {key}"
            )
        shared.units.add(config.unit_id)
        return shared


def _release_bus(bus: ModbusBus, unit_id: int) -> None:
    with _RTU_BUSES_LOCK:
        bus.units.discard(unit_id)
        last = not bus.units
        if last and _RTU_BUSES.get(bus.name) is bus:
            del _RTU_BUSES[bus.name]
    if last:
        with bus.lock:
            bus.close()


@dataclass(frozen=True, slots=True)
class _Block:
    table: RegisterTable
    address: int
    count: int


def _read_plan(profile: RegisterProfile) -> tuple[_Block, ...]:
    """The requests one sample takes: one per table when its fields lie close together."""
    spans: dict[RegisterTable, list[tuple[int, int]]] = {}
    fields_ = [profile.weight, *([profile.tare] if profile.tare is not None else [])]
    for f in fields_:
        spans.setdefault(f.table, []).append((f.address, f.count))
    if profile.status is not None:
        spans.setdefault(profile.status.table, []).append((profile.status.address, 1))
    blocks: list[_Block] = []
    for table, parts in spans.items():
        start = min(a for a, _ in parts)
        end = max(a + c for a, c in parts)
        if end - start <= _MAX_BLOCK_SPAN:
            blocks.append(_Block(table, start, end - start))
        else:
            blocks.extend(_Block(table, a, c) for a, c in parts)
    return tuple(blocks)


class ModbusScale:
    """:class:`~device_drivers.scales.base.Scale` for Modbus weight transmitters.

    Call the weighing methods from one thread per scale (several scales on one bus may be
    used from several threads: the bus serializes them); ``status`` and ``close`` are safe
    from any thread.
    """

    def __init__(self, config: ModbusScaleConfig) -> None:
        self.config = config
        self.profile = config.register_map
        self._plan = _read_plan(self.profile)
        self._bus = _acquire_bus(config)
        self._op_lock = threading.Lock()
        self._closing = threading.Event()
        self._closed = False
        self._generation = 0
        self._link = scale_link(
            config.device_id,
            min_delay=config.reconnect_min_delay,
            max_delay=config.reconnect_max_delay,
            not_yet=f"{self._bus.name} not opened yet",
        )
        self._garbage_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._known_orders: frozenset[FieldName] = frozenset()
        """Fields whose word and byte order a reading on this link has confirmed (see
        :mod:`~device_drivers.scales.modbus_map`); forgotten when the link is reopened,
        since what answers then may be another device."""
        self._stable = StableReader(
            config.device_id,
            poll_interval=config.poll_interval,
            closing=self._closing,
            retry=_STABLE_RETRY,
            closing_raises=(ScaleError,),
        )

    def __enter__(self) -> ModbusScale:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def bus(self) -> ModbusBus:
        """The connection this scale's requests travel on (shared on an RS-485 bus)."""
        return self._bus

    # -- the Scale interface -------------------------------------------------------------

    def read_stable(self, timeout: float) -> WeightReading:
        """A weight that holds still within ``timeout`` seconds.

        Overload, underload, a device fault and refusals end the wait at once; motion,
        garbage, silence and a missing device are retried until the time is up and then
        raised as what was seen last.
        """
        return self._locked(lambda: self._read_stable(max(timeout, 0.0)))

    def read_now(self) -> WeightReading:
        """What the transmitter shows now, stable or not; never record ``stable=False``."""

        def read() -> WeightReading:
            deadline = time.monotonic() + self.config.reply_timeout
            measurement, raw, read_at = self._measure(deadline)
            return self._reading(measurement, raw, read_at, stable=measurement.flags.stable is True)

        return self._locked(read)

    def zero(self, timeout: float = 5.0) -> None:
        """Zero a still, empty platform; confirmed by reading back zero within ``timeout``.

        The device refuses a zero outside its zero range (an exception response, raised as
        ``EL``); zeroing also drops the tare on most transmitters. A profile without a
        ``[command]`` section raises ``ES`` at once, sending nothing (so do tare and
        clear-tare).
        """

        commands = self._commands("zero")

        def zero() -> None:
            deadline = time.monotonic() + max(timeout, 0.0)
            self._stable_until(deadline)
            self._command("zero", commands.zero, deadline)
            self._confirm("zero", deadline, lambda m: abs(m.net) <= self.profile.division)

        self._locked(zero)

    def tare(self, timeout: float = 5.0) -> Weight:
        """Tare the still load and return the tare, confirmed by a net of zero.

        With a tare register in the profile the tare is what the device reports; without
        one it is the net weight that was on the platform, i.e. what this tare added to any
        tare already in force.
        """

        commands = self._commands("tare")

        def tare() -> Weight:
            deadline = time.monotonic() + max(timeout, 0.0)
            before = self._stable_until(deadline)
            self._command("tare", commands.tare, deadline)
            after = self._confirm("tare", deadline, lambda m: abs(m.net) <= self.profile.division)
            value = after.tare if after.tare is not None else before.net
            return Weight(value, self.profile.unit)

        return self._locked(tare)

    def clear_tare(self) -> None:
        """Drop the tare; a profile without a clear-tare command raises ``ES``."""
        value = self._commands("clear_tare").clear_tare

        def clear() -> None:
            if value is None:
                raise ScaleCommandError(self.config.device_id, "ES", "clear_tare")
            deadline = time.monotonic() + max(1.0, 4 * self.config.reply_timeout)
            self._command("clear_tare", value, deadline)
            if self.profile.tare is not None:
                self._confirm("clear_tare", deadline, lambda m: m.tare == 0)

        self._locked(clear)

    def status(self) -> DeviceStatus:
        return self._link.snapshot()

    def close(self) -> None:
        """Release the connection (or this unit's share of the bus); idempotent.

        A request already on the wire finishes first (within one reply timeout).
        """
        self._closing.set()
        with self._op_lock:
            if self._closed:
                return
            self._closed = True
            if self._bus.serial_line:
                _release_bus(self._bus, self.config.unit_id)
            else:
                with self._bus.lock:
                    self._bus.close()
            self._link.closed()

    # -- weighing --------------------------------------------------------------------------

    def _read_stable(self, timeout: float) -> WeightReading:
        deadline = time.monotonic() + timeout
        measurement, raw, read_at = self._settle(deadline)
        return self._reading(measurement, raw, read_at, stable=True)

    def _stable_until(self, deadline: float) -> Measurement:
        return self._settle(deadline)[0]

    def _settle(self, deadline: float) -> tuple[Measurement, bytes, datetime.datetime]:
        run: StableRun[Measurement] = StableRun(
            self.config.stable_mode, self.config.stable_readings, self.profile.division
        )
        return self._stable.read(
            lambda: self._measure(deadline),
            lambda polled: run.add(polled[0], polled[0].net, stable=polled[0].flags.stable),
            run=run,
            deadline=deadline,
            motion_detail="no stable weight in time",
        )

    def _confirm(
        self, what: str, deadline: float, done: Callable[[Measurement], bool]
    ) -> Measurement:
        """Poll until the device shows the command took effect, or time out saying so."""
        last_problem: ScaleError | None = None
        while True:
            try:
                measurement, _, _ = self._measure(deadline)
            except (ScaleOverloadError, ScaleUnderloadError, ScaleDeviceFaultError):
                raise
            except ScaleError as exc:
                last_problem = exc
            else:
                if measurement.flags.stable is not False and done(measurement):
                    return measurement
            if not self._stable.pause(deadline):
                break
        detail = f"{what} not confirmed by the device in time"
        if last_problem is not None:
            detail += f" (last: {last_problem.detail})"
        raise ScaleTimeoutError(self.config.device_id, detail)

    def _measure(self, deadline: float) -> tuple[Measurement, bytes, datetime.datetime]:
        """Read one sample (every block of the plan) and decode it."""
        values: dict[tuple[str, int], int] = {}
        raw = b""
        for block in self._plan:
            what = f"read {block.table} {block.address}+{block.count}"
            response, frame = self._transact(
                what, functools.partial(self._read, block=block), deadline
            )
            registers = list(getattr(response, "registers", []) or [])
            if len(registers) != block.count:
                raise self._garbage(f"{what}: reply with {len(registers)} registers", frame)
            raw += frame
            for offset, value in enumerate(registers):
                values[(block.table, block.address + offset)] = value
        read_at = datetime.datetime.now(datetime.UTC)
        profile = self.profile

        def regs(table: str, address: int, count: int) -> list[int]:
            return [values[(table, address + i)] for i in range(count)]

        weight = profile.weight
        status = profile.status
        tare = profile.tare
        try:
            measurement = decode_measurement(
                profile,
                regs(weight.table, weight.address, weight.count),
                None if status is None else values[(status.table, status.address)],
                None if tare is None else regs(tare.table, tare.address, tare.count),
                known_orders=self._known_orders,
            )
        except RegisterDecodeError as exc:
            device_id = self.config.device_id
            if exc.reason == "overload":
                raise ScaleOverloadError(device_id, exc.detail) from None
            if exc.reason == "underload":
                raise ScaleUnderloadError(device_id, exc.detail) from None
            if exc.reason == "device_error":
                raise ScaleDeviceFaultError(device_id, exc.detail) from None
            raise self._garbage(exc.detail, raw) from None
        if not measurement.confirmed <= self._known_orders:
            self._known_orders |= measurement.confirmed
            log.info(
                "scale: the profile's %s order is confirmed by a reading",
                " and ".join(sorted(measurement.confirmed)),
                extra={"device": self.config.device_id, "event": "order_confirmed"},
            )
        self._answered()
        return measurement, raw, read_at

    def _read(self, client: _SyncClient, *, block: _Block) -> ModbusPDU:
        unit = self.config.unit_id
        if block.table == "input":
            return client.read_input_registers(block.address, count=block.count, device_id=unit)
        return client.read_holding_registers(block.address, count=block.count, device_id=unit)

    def _commands(self, what: str) -> Commands:
        """The profile's command register, or ``ES`` saying the profile has none.

        Raised before anything is sent and not counted: the device did nothing wrong, the
        profile says it takes no commands (zero and tare it on the device itself).
        """
        commands = self.profile.commands
        if commands is None:
            raise ScaleCommandError(
                self.config.device_id,
                "ES",
                f"{what}: profile {self.profile.name} has no [command] section, so this "
                f"driver cannot {what.replace('_', ' ')}; do it on the device",
            )
        return commands

    def _command(self, what: str, value: int, deadline: float) -> None:
        commands = self._commands(what)
        address = commands.address
        unit = self.config.unit_id
        response, frame = self._transact(
            f"{what}: write {value} to {address}",
            lambda c: c.write_register(address, value, device_id=unit),
            deadline,
        )
        if getattr(response, "registers", None) not in ([value], None):
            raise self._garbage(f"{what}: the device echoed another value", frame)
        self._answered()

    def _reading(
        self, m: Measurement, raw: bytes, read_at: datetime.datetime, *, stable: bool
    ) -> WeightReading:
        return WeightReading(
            device_id=self.config.device_id,
            net=m.net,
            gross=None if m.tare is None else m.net + m.tare,
            tare=m.tare,
            unit=self.profile.unit,
            stable=stable,
            raw=raw,
            read_at=read_at,
        )

    # -- one request --------------------------------------------------------------------------

    def _transact(
        self, what: str, call: Callable[[_SyncClient], ModbusPDU], deadline: float
    ) -> tuple[ModbusPDU, bytes]:
        """One request under the bus lock, opening the bus first if the backoff allows."""
        bus = self._bus
        while True:
            with bus.lock:
                if self._closing.is_set():
                    raise ScaleUnavailableError(self.config.device_id, "closed")
                if not bus.is_open():
                    now = time.monotonic()
                    if self._link.may_attempt(now):
                        detail = bus.open()
                        if detail is not None:
                            self._link.open_failed(now, detail)
                if bus.is_open():
                    if bus.generation != self._generation:
                        self._generation = bus.generation
                        self._known_orders = frozenset()
                        self._link.opened(time.monotonic(), bus.name)
                    return self._exchange(what, call)
                wait_until = self._link.next_attempt_at
            if wait_until >= deadline:
                raise ScaleUnavailableError(self.config.device_id, self._link.io_detail)
            if self._closing.wait(max(wait_until - time.monotonic(), 0.0)):
                raise ScaleUnavailableError(self.config.device_id, "closed")

    def _exchange(
        self, what: str, call: Callable[[_SyncClient], ModbusPDU]
    ) -> tuple[ModbusPDU, bytes]:
        bus = self._bus
        noise = bus.begin()
        if noise:
            # Unasked bytes on a master-slave bus are noise; counted, the request goes on.
            self._count("garbage", f"{len(noise)} unasked bytes on the line", sample=noise)
        try:
            response = call(bus.client)
        except ConnectionException as exc:
            raise self._lost(f"{what}: {exc}") from None
        except ModbusIOException as exc:
            if not bus.is_open():
                raise self._lost(f"{what}: {exc}") from None
            bus.reply_owed = True
            if bus.last_received:
                raise self._garbage(f"{what}: no valid reply frame", bus.last_received) from None
            raise self._unanswered(what) from None
        except (ModbusException, OSError, ValueError, TypeError, IndexError) as exc:
            # pymodbus decoding a mangled frame can fail in many ways; all mean garbage.
            if not bus.is_open():
                raise self._lost(f"{what}: {exc}") from None
            raise self._garbage(f"{what}: {exc}", bus.last_received) from None
        frame = bus.last_received
        if isinstance(response, ExceptionResponse):
            raise self._refusal(what, response.exception_code) from None
        if response.isError():
            raise self._garbage(f"{what}: error reply {response}", frame)
        self._link.data_arrived()
        return response, frame

    def _refusal(self, what: str, code: int) -> ScaleError:
        device_id = self.config.device_id
        detail = f"{what}: Modbus exception {code}"
        log.warning(
            "scale: %s", detail, extra={"device": device_id, "reason": "exception_response"}
        )
        self._link.data_arrived()
        if code in (1, 2):
            return ScaleCommandError(device_id, "ES", f"{what} (exception {code})")
        if code in (3, 4):
            return ScaleCommandError(device_id, "EL", f"{what} (exception {code})")
        if code in (5, 6):
            return ScaleBusyError(device_id, detail)
        if code in (10, 11):
            self._count("timeout", detail)
            return ScaleTimeoutError(device_id, detail)
        return self._garbage(detail, self._bus.last_received)

    def _lost(self, detail: str) -> ScaleUnavailableError:
        self._bus.close()
        if self._closing.is_set():
            return ScaleUnavailableError(self.config.device_id, "closed")
        self._link.lost(time.monotonic(), f"lost {self._bus.name}: {detail}")
        return ScaleUnavailableError(self.config.device_id, self._link.io_detail)

    # -- accounting ------------------------------------------------------------------------------

    def _locked(self, call: Callable[[], _R]) -> _R:
        with self._op_lock:
            if self._closed:
                raise ScaleUnavailableError(self.config.device_id, "closed")
            with counting_outcome(self._link, _OUTCOME_REASONS):
                return call()

    def _answered(self) -> None:
        self._garbage_in_a_row = 0
        self._timeouts_in_a_row = 0
        self._link.answered()

    def _unanswered(self, what: str) -> ScaleTimeoutError:
        detail = f"no reply to {what} within {self.config.reply_timeout:g} s"
        self._timeouts_in_a_row += 1
        self._count("timeout", detail)
        if self._timeouts_in_a_row >= _DEGRADED_AFTER_TIMEOUTS:
            self._link.degrade()
        return ScaleTimeoutError(self.config.device_id, detail)

    def _garbage(self, detail: str, sample: bytes) -> ScaleGarbageError:
        self._garbage_in_a_row += 1
        self._count("garbage", detail, sample=sample)
        if self._garbage_in_a_row >= _DEGRADED_AFTER_GARBAGE:
            self._link.degrade()
        return ScaleGarbageError(self.config.device_id, detail)

    def _count(self, reason: str, detail: str, *, sample: bytes | None = None) -> None:
        # Binary frames: hex shows a byte order or CRC problem where repr would not.
        count_problem(self._link, reason, detail, sample=None if sample is None else sample.hex())


def create_modbus_scale(device_id: str, options: Mapping[str, object]) -> ModbusScale:
    """The ``modbus-scale`` entry point: a site file's scale section to a driver.

    Options are :class:`ModbusScaleConfig`'s fields (``address``, ``profile``, ``unit_id``,
    ...); an unknown or mistyped one is a :class:`DeviceConfigError` naming it.
    """
    config = config_from_options(
        ModbusScaleConfig,
        device_id,
        options,
        driver="modbus-scale",
        required=("address", "profile"),
    )
    return ModbusScale(config)
