"""Device benchmarks: how fast the edge drivers work their twins over the real wire protocols.

1. **Scanner reads/s** through ``SerialLineScanner`` (configured for 115200 baud) from the
   scanner twin over a pty, every read a GS1-128 element string parsed as the station
   receives it, each one checked (none lost, none garbled). Set against the **line-rate
   limit**, what a real 115200-baud 8N1 line can carry (11,520 bytes/s divided by the bytes
   of one read), and against **raw pty reads/s**: a plain ``os.read`` loop over the same
   bytes from the same twin, the ceiling any reader could reach with this twin and pty.
2. **MT-SICS round trips/s** (``SI`` through ``MtSicsScale.read_now``) over a pty and over
   loopback TCP, against raw round trips on the same transport (write ``SI``, read a line).
3. **Modbus polls/s** through ``ModbusScale.read_now`` over TCP and RTU over a pty, against
   a bare pymodbus client reading the same holding registers.
4. **ZPL jobs/s** through ``ZplPrinter.print_label`` over TCP (unique job ids, journal on
   the real disk), against raw socket sends of the same stamped formats; the twin must
   print every label exactly once either way.

Every pair runs as baseline, driver, driver, baseline, twice by default (``--rounds``), each
slice an equal share of the budget, so a change in the machine's load during the pair weighs
on both sides alike. The scanner twin
runs in its own process: a real scanner is another device, and a writer sharing the
reader's interpreter lock would slow the reader down and flatter nothing.

Run ``.venv/bin/python bench/devices.py --help``. Figures and how to read them:
``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import multiprocessing
import os
import select
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from importlib.metadata import version
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from common import ROOT, cli, console, finish, machine_info, progress_bars, table
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from device_drivers.printers import PrintJob, ZplPrinter, ZplPrinterConfig, build_zpl
from device_drivers.printers import receiving_carton_label as carton_label
from device_drivers.printers.zpl import stamp_job_format
from device_drivers.scales import MtSicsScale, MtSicsScaleConfig, ScaleError
from device_drivers.scales.modbus_map import RegisterProfile, builtin_profile
from device_drivers.scales.modbus_scale import ModbusScale, ModbusScaleConfig
from device_drivers.scanners import Scan, SerialLineScanner, SerialScannerConfig
from simulators.modbus_scale import ModbusScaleTwin
from simulators.printer import ZplPrinterTwin
from simulators.scale import MtSicsScaleTwin
from simulators.scanner import ScannerTwin

PROFILES = ROOT / "device_drivers" / "scales" / "profiles"

# What the scanner twin reads: one GS1-128 symbol per carton, the lot carrying the sequence
# number so that a lost, repeated or reordered read shows. FNC1 (GS) ends the variable-length
# lot before the expiry, as on a real label. The lot is a letter and digits, the common
# shape; an all-digit lot costs the driver's GS1 check about half as much again, because
# more of its tails could be a hidden element string (see device_drivers.scanners.gs1).
GS = "\x1d"
GTIN = "09506000134352"
EXPIRY = datetime.date(2027, 3, 31)
AIM_GS1_128 = "]C1"
LOT_PREFIX = "L"
LOT_DIGITS = 7
MAX_SCANS = 10**LOT_DIGITS
EXPECTED_AIS = ("01", "10", "17")

SCALE_WEIGHT = Decimal("1234.50")
"""On the MT-SICS twin, in grams with two decimals: the reply is ``S S    1234.50 g``."""
MODBUS_PROFILE = "generic-int32-cdab"
MODBUS_WEIGHT = Decimal("12.345")
"""On the Modbus twin, in kg with three decimals (raw 12345, low word first)."""

STALL_S = 5.0
"""A reader that sees nothing for this long gives up; what it did not get counts as lost."""


class Measurement(StrEnum):
    SCANNER = "scanner"
    MTSICS = "mtsics"
    MODBUS = "modbus"
    ZPL = "zpl"


def scan_payload(seq: int) -> str:
    """The element strings of read number ``seq``: (01) GTIN, (10) lot, GS, (17) expiry."""
    return f"01{GTIN}10{LOT_PREFIX}{seq:0{LOT_DIGITS}d}{GS}17{EXPIRY:%y%m%d}"


def scan_line(seq: int) -> bytes:
    """Read ``seq`` as the wire carries it, without the terminator."""
    return (AIM_GS1_128 + scan_payload(seq)).encode()


SCAN_WIRE_BYTES = len(scan_line(0)) + 1
"""AIM identifier + element strings + CR: the bytes one read takes on the wire."""


def line_bits_per_byte(bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> int:
    """Start bit + data bits + parity bit + stop bits: 10 for 8N1."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


# --------------------------------------------------------------------------- results


@dataclass
class Run:
    """One timed run of one side (driver or baseline), or the sum of its halves."""

    ops: int = 0
    seconds: float = 0.0
    lost: int = 0
    """Reads or replies that never arrived (or failed) within the run."""
    garbled: int = 0
    """Arrived but not what was sent: wrong weight, wrong lot, out of order, bad frame."""
    reads: int = 0
    """Scanner only: read calls on the port, to show how the bytes came in."""
    latencies: list[float] = field(default_factory=list)
    """Seconds per round trip, for request/reply measurements."""
    slice_rates: list[float] = field(default_factory=list)
    """The rate of each slice, in the order run: how steady the figure was."""

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def __add__(self, other: Run) -> Run:
        return Run(
            ops=self.ops + other.ops,
            seconds=self.seconds + other.seconds,
            lost=self.lost + other.lost,
            garbled=self.garbled + other.garbled,
            reads=self.reads + other.reads,
            latencies=self.latencies + other.latencies,
            slice_rates=(self.slice_rates or [self.rate]) + (other.slice_rates or [other.rate]),
        )


@dataclass
class Side:
    """What goes into the report for one side of a pair."""

    name: str
    ops: int
    seconds: float
    rate: float
    lost: int
    garbled: int
    p50_us: float | None = None
    p99_us: float | None = None
    bytes_per_read: float | None = None
    slice_rates: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, run: Run, *, wire_bytes: int = 0) -> Side:
        ordered = sorted(run.latencies)
        return cls(
            name=name,
            ops=run.ops,
            seconds=round(run.seconds, 4),
            rate=round(run.rate, 1),
            lost=run.lost,
            garbled=run.garbled,
            p50_us=round(ordered[len(ordered) // 2] * 1e6, 1) if ordered else None,
            p99_us=round(ordered[int(len(ordered) * 0.99)] * 1e6, 1) if ordered else None,
            bytes_per_read=(
                round(run.ops * wire_bytes / run.reads, 1) if run.reads and wire_bytes else None
            ),
            slice_rates=[round(rate, 1) for rate in run.slice_rates],
        )


@dataclass
class Figure:
    """One line of the report: a driver, its baseline, and the wire it would sit on."""

    measurement: str
    transport: str
    unit: str
    """What one op is: a read, a round trip, a poll, a job."""
    driver: Side
    baseline: Side
    driver_over_baseline: float
    line: str | None = None
    """The serial line a real device would sit on, e.g. ``115200 8N1``."""
    line_limit: float | None = None
    """Ops/s that line could carry at most."""
    driver_over_line: float | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    """Everything printed, and written with ``--json``; the command, so it can be re-run."""

    command: str
    machine: dict[str, Any]
    budget: str
    figures: list[Figure] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- budgets


@dataclass(frozen=True, slots=True)
class Budget:
    """How long one side runs: ``seconds`` or ``count`` ops in all, in ``2 * rounds`` slices."""

    seconds: float | None
    count: int | None
    rounds: int = 2

    def share(self, parts: int) -> Budget:
        """One of ``parts`` equal slices of this budget."""
        return Budget(
            None if self.seconds is None else self.seconds / parts,
            None if self.count is None else max(1, self.count // parts),
            self.rounds,
        )

    def done(self, ops: int, elapsed: float) -> bool:
        if self.count is not None:
            return ops >= self.count
        assert self.seconds is not None
        return elapsed >= self.seconds

    def fraction(self, ops: int, elapsed: float) -> float:
        if self.count is not None:
            return ops / self.count
        assert self.seconds is not None
        return elapsed / self.seconds


class Meter:
    """One progress line per run; updated every few hundred ops, so it costs nothing."""

    EVERY = 256

    def __init__(self, progress: Progress, label: str) -> None:
        self._progress = progress
        self._task: TaskID = progress.add_task(label, total=1.0, ops="0")

    def show(self, budget: Budget, ops: int, elapsed: float) -> None:
        self._progress.update(
            self._task, completed=min(budget.fraction(ops, elapsed), 1.0), ops=f"{ops:,}"
        )

    def finish(self, ops: int) -> None:
        self._progress.update(self._task, completed=1.0, ops=f"{ops:,}")


def paired(
    baseline: Callable[[Budget, str], Run],
    driver: Callable[[Budget, str], Run],
    budget: Budget,
) -> tuple[Run, Run]:
    """Baseline, driver, driver, baseline, ``budget.rounds`` times: (driver, baseline) sums.

    Each side gets ``budget`` in all, in ``2 * rounds`` slices. On a shared two-core machine
    the load moves while a pair runs; in this order a drift that is steady over a round
    weighs on both sides the same, and more rounds spread a burst of others' work over both.
    """
    rounds = budget.rounds
    slices = 2 * rounds
    part = budget.share(slices)
    driver_runs: list[Run] = []
    baseline_runs: list[Run] = []
    for number in range(rounds):
        first, second = f"{2 * number + 1}/{slices}", f"{2 * number + 2}/{slices}"
        baseline_runs.append(baseline(part, first))
        driver_runs.append(driver(part, first))
        driver_runs.append(driver(part, second))
        baseline_runs.append(baseline(part, second))
    return sum(driver_runs[1:], driver_runs[0]), sum(baseline_runs[1:], baseline_runs[0])


Outcome = Literal["ok", "garbled", "lost"]


def request_loop(call: Callable[[], Outcome], budget: Budget, meter: Meter) -> Run:
    """Time ``call`` (one round trip) until the budget is spent; each trip is timed too.

    The budget counts attempts, so a device that stopped answering ends the run; ``ops``
    counts only good answers, so a rate never includes failures.
    """
    run = Run()
    latencies = run.latencies
    attempts = 0
    started = now = time.perf_counter()
    while not budget.done(attempts, now - started):
        before = time.perf_counter()
        outcome = call()
        now = time.perf_counter()
        latencies.append(now - before)
        attempts += 1
        if outcome == "ok":
            run.ops += 1
        elif outcome == "garbled":
            run.garbled += 1
        else:
            run.lost += 1
        if attempts % Meter.EVERY == 0:
            meter.show(budget, attempts, now - started)
    run.seconds = now - started
    meter.finish(attempts)
    return run


def warm(call: Callable[[], Outcome], times: int = 20) -> None:
    """Untimed round trips first: the driver opens its port lazily, on the first call."""
    outcomes = Counter(call() for _ in range(times))
    if outcomes["ok"] == 0:
        raise RuntimeError(f"warm-up got no good reply: {dict(outcomes)}")


# --------------------------------------------------------------------------- 1. scanner


def _producer_main(conn: Connection, stop: EventType) -> None:
    """The scanner twin's process: opens a twin, sends reads on request, closes it.

    Messages in: ``("open", 0)``, ``("run", limit)``, ``("close", 0)``, ``None`` to exit.
    ``run`` sends reads 0, 1, 2, ... one ``send`` each (a scanner sends one read at a time)
    until ``limit`` or until ``stop`` is set, then answers how many it sent.
    """
    twin: ScannerTwin | None = None
    try:
        while (message := conn.recv()) is not None:
            command, limit = message
            if command == "open":
                # Generous write timeout: the pty fills whenever the reader is slower, which
                # is the point; only a reader gone for a minute is an error.
                twin = ScannerTwin(write_timeout=60.0)
                conn.send(twin.device_path)
            elif command == "run":
                assert twin is not None
                sent = 0
                while sent < limit:
                    twin.send(scan_payload(sent), symbology=AIM_GS1_128)
                    sent += 1
                    if sent % 64 == 0 and stop.is_set():
                        break
                conn.send(sent)
            elif command == "close" and twin is not None:
                twin.close()
                twin = None
                conn.send("closed")
    finally:
        if twin is not None:
            twin.close()


class ScannerProducer:
    """Drives :func:`_producer_main` in a child process (spawned: nothing inherited)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._stop = context.Event()
        self._process = context.Process(
            target=_producer_main, args=(child, self._stop), name="scanner-twin", daemon=True
        )
        self._process.start()
        child.close()

    def _answer(self, timeout: float = 30.0) -> object:
        if not self._conn.poll(timeout):
            raise RuntimeError("the scanner twin's process does not answer")
        return self._conn.recv()

    def open(self) -> str:
        self._conn.send(("open", 0))
        path = self._answer()
        assert isinstance(path, str)
        return path

    def start(self, limit: int) -> None:
        self._stop.clear()
        self._conn.send(("run", min(limit, MAX_SCANS)))

    def stop(self) -> None:
        self._stop.set()

    def sent(self) -> int | None:
        """How many reads the finished run sent; ``None`` while it still runs."""
        if not self._conn.poll():
            return None
        count = self._conn.recv()
        assert isinstance(count, int)
        return count

    def close_twin(self) -> None:
        self._conn.send(("close", 0))
        self._answer()

    def shutdown(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send(None)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._conn.close()


class ScanChecker:
    """Checks each scan against what the twin sent: every field and byte, in order.

    Missing reads show at the end, as the twin's count of reads sent minus the good ones.
    """

    def __init__(self) -> None:
        self.next_seq = 0
        self.good = 0
        self.garbled = 0

    def check(self, scan: Scan) -> None:
        gs1 = scan.gs1
        if (
            gs1 is None
            or gs1.gtin != GTIN
            or gs1.expiry != EXPIRY
            or gs1.lot is None
            or len(gs1.lot) != len(LOT_PREFIX) + LOT_DIGITS
            or not gs1.lot.startswith(LOT_PREFIX)
            or scan.symbology != AIM_GS1_128
        ):
            self.garbled += 1
            return
        seq = int(gs1.lot[len(LOT_PREFIX) :])
        # Byte for byte as well: a fraction of a microsecond against the driver's ~100.
        if seq < self.next_seq or scan.raw != scan_line(seq):
            self.garbled += 1  # a repeat, out of order, or bytes the twin did not send
            return
        self.next_seq = seq + 1
        self.good += 1


def scanner_driver_run(
    producer: ScannerProducer, budget: Budget, baud: int, progress: Progress, part: str
) -> Run:
    """``read_scan`` in a station loop until the budget is spent; the rest is drained."""
    path = producer.open()
    meter = Meter(progress, f"scanner driver {part}")
    config = SerialScannerConfig(
        device_id="bench-scanner",
        port=path,
        baudrate=baud,
        terminator="CR",
        gs1_expected_ais=EXPECTED_AIS,
    )
    checker = ScanChecker()
    run = Run()
    try:
        with SerialLineScanner(config) as scanner:
            # Open the port (pyserial flushes its input on open) before the twin sends.
            if scanner.read_scan(0) is not None or scanner.status().state != "connected":
                raise RuntimeError(f"scanner did not connect: {scanner.status()}")
            producer.start(budget.count if budget.count is not None else MAX_SCANS)
            started = last_seen = now = time.perf_counter()
            while not budget.done(checker.good, now - started):
                scan = scanner.read_scan(0.5)
                now = time.perf_counter()
                if scan is None:
                    if now - last_seen > STALL_S:
                        break
                    continue
                last_seen = now
                checker.check(scan)
                if checker.good % Meter.EVERY == 0:
                    meter.show(budget, checker.good, now - started)
            run.ops, run.seconds = checker.good, now - started
            producer.stop()
            sent = _drain(producer, lambda: _drain_scans(scanner, checker))
            # Lines the driver refused (framing, GS1) never became scans: garbled on the wire.
            rejected = sum(scanner.status().errors.values())
    finally:
        producer.close_twin()
    meter.finish(run.ops)
    run.garbled = checker.garbled + rejected
    # Garbled or refused reads arrived; lost ones never did.
    run.lost = max(sent - checker.good - run.garbled, 0)
    return run


def _drain_scans(scanner: SerialLineScanner, checker: ScanChecker) -> bool:
    """Read what is left after the timed window; ``False`` once nothing came for a while."""
    scan = scanner.read_scan(0.2)
    if scan is None:
        return False
    checker.check(scan)
    return True


def _drain(producer: ScannerProducer, read_more: Callable[[], bool]) -> int:
    """Keep reading until the twin says how many it sent and those are in, or it stalls."""
    sent: int | None = None
    quiet_since = time.monotonic()
    while True:
        if sent is None:
            sent = producer.sent()
        if read_more():
            quiet_since = time.monotonic()
        elif sent is not None or time.monotonic() - quiet_since > STALL_S:
            break
    if sent is None:
        raise RuntimeError("the scanner twin never said how many reads it sent")
    return sent


def scanner_raw_run(
    producer: ScannerProducer, budget: Budget, progress: Progress, part: str
) -> Run:
    """A plain ``os.read`` loop on the same pty: what any reader could get out of it."""
    path = producer.open()
    meter = Meter(progress, f"scanner raw os.read {part}")
    chunks: list[bytes] = []
    run = Run()
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    try:
        producer.start(budget.count if budget.count is not None else MAX_SCANS)
        lines = reads = 0
        started = now = time.perf_counter()
        while not budget.done(lines, now - started):
            chunk = os.read(fd, 65536)
            now = time.perf_counter()
            chunks.append(chunk)
            reads += 1
            lines += chunk.count(b"\r")
            if reads % Meter.EVERY == 0:
                meter.show(budget, lines, now - started)
        run.ops, run.seconds, run.reads = lines, now - started, reads
        producer.stop()

        def read_more() -> bool:
            if not select.select([fd], [], [], 0.2)[0]:
                return False
            chunks.append(os.read(fd, 65536))
            return True

        sent = _drain(producer, read_more)
    finally:
        os.close(fd)
        producer.close_twin()
    meter.finish(run.ops)
    # Checked after the clock stopped: the baseline's job is only to move the bytes.
    received = b"".join(chunks).split(b"\r")
    tail = received.pop()
    good = sum(1 for seq, line in enumerate(received) if line == scan_line(seq))
    run.garbled = len(received) - good + (1 if tail else 0)
    run.lost = max(sent - len(received), 0)
    return run


def measure_scanner(
    producer: ScannerProducer, budget: Budget, baud: int, progress: Progress
) -> Figure:
    driver, raw = paired(
        lambda b, part: scanner_raw_run(producer, b, progress, part),
        lambda b, part: scanner_driver_run(producer, b, baud, progress, part),
        budget,
    )
    limit = baud / line_bits_per_byte() / SCAN_WIRE_BYTES
    raw_side = Side.of("raw os.read loop", raw, wire_bytes=SCAN_WIRE_BYTES)
    return Figure(
        measurement="scanner reads",
        transport="pty",
        unit="read",
        driver=Side.of("SerialLineScanner.read_scan", driver),
        baseline=raw_side,
        driver_over_baseline=round(driver.rate / raw.rate, 3),
        line=f"{baud} 8N1",
        line_limit=round(limit, 1),
        driver_over_line=round(driver.rate / limit, 1),
        notes=[
            f"one read = {SCAN_WIRE_BYTES} bytes (GS1-128: AIM ]C1, (01) (10) GS (17), CR); "
            "every read parsed as GS1 with expected AIs 01, 10, 17 and checked field by field "
            "and byte for byte",
            f"driver configured for {baud} baud; the twin writes one read per write() from "
            "its own process; the pty carries no baud rate. The raw loop got "
            f"{raw_side.bytes_per_read or 0:,.0f} bytes per os.read on average: "
            + (
                "it mostly waited for the twin, so its rate is the twin's write rate"
                if (raw_side.bytes_per_read or 0) < 4 * SCAN_WIRE_BYTES
                else "the pty was full, so its rate is the reader's"
            ),
        ],
    )


# --------------------------------------------------------------------------- 2. MT-SICS


def measure_mtsics(budget: Budget, progress: Progress) -> list[Figure]:
    """``read_now`` (one ``SI``) over a pty and over TCP, against raw ``SI`` round trips."""
    figures = []
    with MtSicsScaleTwin(pty=True, tcp_port=0, weight=SCALE_WEIGHT, unit="g", decimals=2) as twin:
        assert twin.device_path is not None
        assert twin.tcp_address is not None
        host, port = twin.tcp_address
        reply = f"S S {format(SCALE_WEIGHT, 'f'):>10} g\r\n".encode()
        for transport, address in (
            ("pty", twin.device_path),
            ("tcp", f"tcp://{host}:{port}"),
        ):

            def driver(
                b: Budget, part: str, address: str = address, transport: str = transport
            ) -> Run:
                config = MtSicsScaleConfig(
                    device_id="bench-scale", address=address, baudrate=9600, reply_timeout=1.0
                )
                with MtSicsScale(config) as scale:

                    def call() -> Outcome:
                        try:
                            reading = scale.read_now()
                        except ScaleError:
                            return "lost"
                        if (reading.net, reading.unit, reading.stable) != (SCALE_WEIGHT, "g", True):
                            return "garbled"
                        return "ok"

                    warm(call)
                    return request_loop(
                        call, b, Meter(progress, f"mtsics {transport} driver {part}")
                    )

            def raw(b: Budget, part: str, transport: str = transport) -> Run:
                with raw_line_channel(transport, twin) as (send, receive):

                    def call() -> Outcome:
                        try:
                            send(b"SI\r\n")
                            line = b""
                            while not line.endswith(b"\n"):
                                chunk = receive()
                                if not chunk:
                                    return "lost"
                                line += chunk
                        except OSError:
                            return "lost"
                        return "ok" if line == reply else "garbled"

                    warm(call)
                    return request_loop(call, b, Meter(progress, f"mtsics {transport} raw {part}"))

            driver_run, raw_run = paired(raw, driver, budget)
            wire = 4 + len(reply)  # "SI\r\n" and the reply, both on the line
            limit = 9600 / line_bits_per_byte() / wire if transport == "pty" else None
            figures.append(
                Figure(
                    measurement="MT-SICS SI",
                    transport="pty" if transport == "pty" else "TCP",
                    unit="round trip",
                    driver=Side.of("MtSicsScale.read_now", driver_run),
                    baseline=Side.of("raw write SI / read line", raw_run),
                    driver_over_baseline=round(driver_run.rate / raw_run.rate, 3),
                    line="9600 8N1" if limit else None,
                    line_limit=round(limit, 1) if limit else None,
                    driver_over_line=round(driver_run.rate / limit, 1) if limit else None,
                    notes=[f"one round trip = {wire} bytes on the line (SI + {reply!r})"]
                    if transport == "pty"
                    else [],
                )
            )
    return figures


@contextlib.contextmanager
def raw_line_channel(
    transport: str, twin: MtSicsScaleTwin
) -> Iterator[tuple[Callable[[bytes], None], Callable[[], bytes]]]:
    """(send, receive) on the twin's pty or a TCP connection, with nothing in between.

    TCP gets ``TCP_NODELAY`` as the driver's transport does; receive waits up to a second.
    """
    if transport == "pty":
        assert twin.device_path is not None
        fd = os.open(twin.device_path, os.O_RDWR | os.O_NOCTTY)
        try:

            def receive_pty() -> bytes:
                if not select.select([fd], [], [], 1.0)[0]:
                    return b""
                return os.read(fd, 4096)

            def send_pty(data: bytes) -> None:
                os.write(fd, data)

            yield send_pty, receive_pty
        finally:
            os.close(fd)
        return
    assert twin.tcp_address is not None
    with socket.create_connection(twin.tcp_address, timeout=1.0) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def receive_tcp() -> bytes:
            try:
                return sock.recv(4096)
            except TimeoutError:
                return b""

        yield sock.sendall, receive_tcp


# --------------------------------------------------------------------------- 3. Modbus


def register_block(profile: RegisterProfile) -> tuple[int, int]:
    """(address, count) of the holding registers one sample takes: weight, tare, status.

    The driver reads them in one request when they lie close together, as they do in the
    profile measured here; the baseline asks for exactly the same registers.
    """
    spans = [(profile.weight.address, profile.weight.count)]
    if profile.tare is not None:
        spans.append((profile.tare.address, profile.tare.count))
    if profile.status is not None:
        spans.append((profile.status.address, 1))
    tables = {profile.weight.table, *(() if profile.status is None else (profile.status.table,))}
    if tables != {"holding"}:
        raise RuntimeError(f"profile {profile.name} is not all holding registers")
    start = min(a for a, _ in spans)
    return start, max(a + c for a, c in spans) - start


def measure_modbus(budget: Budget, progress: Progress, workdir: Path) -> list[Figure]:
    profile = builtin_profile(MODBUS_PROFILE)
    start, count = register_block(profile)
    raw_weight = int(MODBUS_WEIGHT.scaleb(profile.decimals))
    weight_at = profile.weight.address - start
    figures = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix="modbus-") as scratch:
        link = Path(scratch) / "usb-bench-RS485-if00-port0"
        with ModbusScaleTwin(
            PROFILES / f"{MODBUS_PROFILE}.toml",
            tcp_port=0,
            rtu=True,
            link=link,
            weight=MODBUS_WEIGHT,
        ) as twin:
            assert twin.tcp_address is not None
            host, port = twin.tcp_address
            for transport, address in (("tcp", f"tcp://{host}:{port}"), ("rtu", str(link))):

                def driver(
                    b: Budget, part: str, address: str = address, transport: str = transport
                ) -> Run:
                    config = ModbusScaleConfig(
                        device_id="bench-modbus",
                        address=address,
                        profile=MODBUS_PROFILE,
                        reply_timeout=0.5,
                    )
                    with ModbusScale(config) as scale:

                        def call() -> Outcome:
                            try:
                                reading = scale.read_now()
                            except ScaleError:
                                return "lost"
                            if (reading.net, reading.unit) != (MODBUS_WEIGHT, "kg"):
                                return "garbled"
                            return "ok"

                        warm(call)
                        return request_loop(
                            call, b, Meter(progress, f"modbus {transport} driver {part}")
                        )

                def raw(b: Budget, part: str, transport: str = transport) -> Run:
                    client: ModbusTcpClient | ModbusSerialClient
                    if transport == "tcp":
                        client = ModbusTcpClient(host, port=port, timeout=0.5, retries=0)
                    else:
                        client = ModbusSerialClient(
                            str(link),
                            framer=FramerType.RTU,
                            baudrate=19200,
                            bytesize=8,
                            parity="N",
                            stopbits=1,
                            timeout=0.5,
                            retries=0,
                        )
                    if not client.connect():
                        raise RuntimeError(f"pymodbus cannot connect over {transport}")
                    try:

                        def call() -> Outcome:
                            try:
                                reply = client.read_holding_registers(
                                    start, count=count, device_id=1
                                )
                            except ModbusException:
                                return "lost"
                            if reply.isError():
                                return "lost"
                            words = reply.registers
                            # Low word first (CDAB), as the profile says.
                            value = words[weight_at] | words[weight_at + 1] << 16
                            return (
                                "ok" if len(words) == count and value == raw_weight else "garbled"
                            )

                        warm(call)
                        return request_loop(
                            call, b, Meter(progress, f"modbus {transport} raw {part}")
                        )
                    finally:
                        client.close()  # type: ignore[no-untyped-call]  # pymodbus: no hints

                driver_run, raw_run = paired(raw, driver, budget)
                # RTU: request (id, fc, address, count, CRC) and reply (id, fc, n, 2n, CRC),
                # each followed by the 3.5 characters of silence that end an RTU frame.
                chars = 8 + 3.5 + (5 + 2 * count) + 3.5
                limit = 19200 / line_bits_per_byte() / chars if transport == "rtu" else None
                figures.append(
                    Figure(
                        measurement="Modbus poll",
                        transport="TCP" if transport == "tcp" else "RTU/pty",
                        unit="poll",
                        driver=Side.of("ModbusScale.read_now", driver_run),
                        baseline=Side.of(
                            f"pymodbus read_holding_registers({start}, {count})", raw_run
                        ),
                        driver_over_baseline=round(driver_run.rate / raw_run.rate, 3),
                        line="19200 8N1" if limit else None,
                        line_limit=round(limit, 1) if limit else None,
                        driver_over_line=round(driver_run.rate / limit, 1) if limit else None,
                        notes=[
                            f"profile {MODBUS_PROFILE}: one request for {count} holding "
                            f"registers (weight, tare, status); twin answers from pymodbus "
                            f"{version('pymodbus')}'s server"
                        ]
                        + (
                            [
                                "pymodbus's synchronous serial client (the driver's too) "
                                "waits for a reply by polling in_waiting every 4 character "
                                "times (2.1 ms at 19200 baud) until it stops growing: about "
                                "4.5 ms a poll on either side, well under the wire's 15.6 ms"
                            ]
                            if transport == "rtu"
                            else []
                        ),
                    )
                )
    return figures


# --------------------------------------------------------------------------- 4. ZPL


def measure_zpl(budget: Budget, progress: Progress, workdir: Path) -> tuple[Figure, list[str]]:
    """``print_label`` per job against raw sends; the twin must print each job once."""
    label = carton_label(
        item_code="SKU-00042",
        description="Whole milk 1 L x 12",
        gtin=GTIN,
        lot="L2611-0042",
        expiry=EXPIRY,
        quantity=12,
        uom="pcs",
    )
    zpl = build_zpl(label)
    problems: list[str] = []
    with (
        ZplPrinterTwin() as twin,
        tempfile.TemporaryDirectory(dir=workdir, prefix="zpl-journal-") as scratch,
    ):
        prefix_raw, suffix_raw = _stamp_template(zpl)

        def check(ids: list[str], first: int) -> tuple[int, int]:
            """(lost, garbled) among the labels printed since index ``first``."""
            printed = twin.wait_for_labels(first + len(ids), timeout=10.0)[first:]
            seen = Counter(label.job_id for label in printed)
            wanted = set(ids)
            lost = sum(1 for job_id in ids if seen[job_id] == 0)
            extra = sum(n - 1 for n in seen.values() if n > 1) + sum(
                n for job_id, n in seen.items() if job_id not in wanted
            )
            bad = sum(1 for label in printed if label.problems)
            if extra or lost or bad:
                problems.append(
                    f"zpl: {lost} jobs missing, {extra} printed more than once or unknown, "
                    f"{bad} with problems"
                )
            return lost, extra + bad

        def driver(b: Budget, part: str) -> Run:
            config = ZplPrinterConfig(
                device_id="bench-printer",
                host="127.0.0.1",
                port=twin.port,
                journal_path=Path(scratch) / f"journal-{part.replace('/', 'of')}.jsonl",
            )
            ids: list[str] = []
            numbers = itertools.count()
            tag = "drv" + part.replace("/", "of")
            with ZplPrinter(config) as printer:

                def call() -> Outcome:
                    # Never a warm-up job's id again: the driver would answer that one from
                    # its journal (printed already) without printing.
                    job_id = f"{tag}-{next(numbers):07d}"
                    ids.append(job_id)
                    result = printer.print_label(PrintJob(job_id, zpl))
                    return "ok" if result.outcome == "printed" else "lost"

                warm(call, 5)
                ids.clear()
                first = len(twin.labels())
                run = request_loop(call, b, Meter(progress, f"zpl driver {part}"))
            lost, garbled = check(ids, first)
            run.lost = max(run.lost, lost)
            run.garbled += garbled
            return run

        def raw(b: Budget, part: str) -> Run:
            tag = "raw" + part.replace("/", "of")
            meter = Meter(progress, f"zpl raw socket {part}")
            first = len(twin.labels())
            ids: list[str] = []
            with socket.create_connection(twin.address, timeout=5.0) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                started = now = time.perf_counter()
                while not b.done(len(ids), now - started):
                    job_id = f"{tag}-{len(ids):07d}"
                    ids.append(job_id)
                    sock.sendall(prefix_raw + job_id.encode() + suffix_raw)
                    now = time.perf_counter()
                    if len(ids) % Meter.EVERY == 0:
                        meter.show(b, len(ids), now - started)
                # The clock stops when the twin has printed them all, as for the driver,
                # whose job ends when the printer's count says the label came out.
                twin.wait_for_labels(first + len(ids), timeout=30.0)
                run = Run(ops=len(ids), seconds=time.perf_counter() - started)
            meter.finish(run.ops)
            run.lost, run.garbled = check(ids, first)
            return run

        driver_run, raw_run = paired(raw, driver, budget)
    figure = Figure(
        measurement="ZPL job",
        transport="TCP",
        unit="job",
        driver=Side.of("ZplPrinter.print_label", driver_run),
        baseline=Side.of("raw socket sendall", raw_run),
        driver_over_baseline=round(driver_run.rate / raw_run.rate, 3),
        notes=[
            f"one job = a {len(zpl)}-byte receiving carton label (GS1-128 + text, ^PQ1) "
            "stamped with a unique job id; the twin prints at once (no print time)",
            "driver per job: ~HS until idle, label counter, journal 'sending' (fsync), "
            "format + ~HS, then ~HS and counter until printed; journal on the real disk",
            "raw: one connection, formats back to back, clock stopped when the twin has "
            "printed them all; no status, no journal, no exactly-once guarantee",
        ],
    )
    return figure, problems


def _stamp_template(zpl: bytes) -> tuple[bytes, bytes]:
    """The stamped format as prefix + job id + suffix, checked against the driver's stamp."""
    probe = "PROBE-0000000"
    stamped, _ = stamp_job_format(zpl, probe)
    prefix, suffix = stamped.split(probe.encode())
    if prefix + b"other-1234567" + suffix != stamp_job_format(zpl, "other-1234567")[0]:
        raise RuntimeError("the driver's job stamp is not prefix + id + suffix")
    return prefix, suffix


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    return machine_info(
        libraries={"pyserial": version("pyserial"), "pymodbus": version("pymodbus")}
    )


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _latency(side: Side) -> str:
    if side.p50_us is None or side.p99_us is None:
        return "-"
    return f"{side.p50_us:,.0f} / {side.p99_us:,.0f}"


def _spread(side: Side) -> str:
    if not side.slice_rates:
        return "-"
    return f"{_rate(min(side.slice_rates))} - {_rate(max(side.slice_rates))}"


def print_report(report: Report) -> None:
    rates = table(
        f"Devices: drivers against their twins ({report.budget})",
        (
            "what",
            "over",
            "driver ops",
            "driver /s",
            "baseline /s",
            "driver ÷ baseline",
            "line",
            "line limit /s",
            "driver ÷ line",
            "lost/garbled drv · base",
        ),
        left=("what", "over"),
    )
    for f in report.figures:
        rates.add_row(
            f.measurement,
            f.transport,
            f"{f.driver.ops:,}",
            _rate(f.driver.rate),
            _rate(f.baseline.rate),
            f"{f.driver_over_baseline:.2f}",
            f.line or "-",
            "-" if f.line_limit is None else _rate(f.line_limit),
            "-" if f.driver_over_line is None else f"{f.driver_over_line:,.1f}",
            f"{f.driver.lost}/{f.driver.garbled} · {f.baseline.lost}/{f.baseline.garbled}",
        )
    console.print(rates)
    latency = table(
        "Per op (p50 / p99 µs) and per slice (lowest - highest /s)",
        (
            "what",
            "over",
            "driver p50 / p99",
            "driver slices",
            "base p50 / p99",
            "base slices",
        ),
        left=("what", "over"),
    )
    for f in report.figures:
        latency.add_row(
            f.measurement,
            f.transport,
            _latency(f.driver),
            _spread(f.driver),
            _latency(f.baseline),
            _spread(f.baseline),
        )
    console.print(latency)
    console.print(
        "line limit: the most a real serial line at that setting carries (bits per byte = "
        "start + data + parity + stop); a pty has no baud rate, so driver ÷ line above 1 "
        "means the driver keeps up with the real wire."
    )
    for f in report.figures:
        console.print(
            f"[bold]{f.measurement} over {f.transport}:[/] driver {f.driver.name}, "
            f"baseline {f.baseline.name}"
        )
        for note in f.notes:
            console.print(f"  {note}")
    for f in report.figures:
        intact = f.driver.lost == f.driver.garbled == 0
        head = (
            f"{f.measurement} over {f.transport}: driver {_rate(f.driver.rate)} {f.unit}s/s, "
            f"{f.driver_over_baseline:.0%} of the baseline's"
        )
        if f.driver_over_line is not None:
            keeps_up = f.driver_over_line > 1 and intact
            console.print(
                f"{head}, {f.driver_over_line:,.1f}x what {f.line} carries, "
                f"{f.driver.lost} lost, {f.driver.garbled} garbled -> "
                + ("[green]keeps up with the wire[/]" if keeps_up else "[red]FALLS BEHIND[/]")
            )
        else:
            console.print(
                f"{head}, {f.driver.lost} lost, {f.driver.garbled} garbled -> "
                + ("[green]intact[/]" if intact else "[red]LOSSES[/]")
            )
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}")


app = cli(__doc__)


@app.command()
def main(
    seconds: Annotated[
        float, typer.Option(min=0.2, help="seconds per side of each measurement, in all")
    ] = 4.0,
    count: Annotated[
        int | None, typer.Option(min=4, help="ops per side instead of --seconds, in all")
    ] = None,
    rounds: Annotated[
        int, typer.Option(min=1, help="baseline-driver-driver-baseline rounds per measurement")
    ] = 2,
    only: Annotated[
        list[Measurement] | None, typer.Option(help="run only these (repeatable)")
    ] = None,
    baud: Annotated[int, typer.Option(min=1, help="scanner line speed to configure")] = 115200,
    workdir: Annotated[Path, typer.Option(help="scratch files (real disk, not tmpfs)")] = (
        ROOT / "var" / "bench"
    ),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON")
    ] = None,
) -> None:
    """Measure scanner, scale and printer drivers against their twins and raw baselines."""
    workdir.mkdir(parents=True, exist_ok=True)
    chosen = list(Measurement) if not only else [m for m in Measurement if m in only]
    budget = Budget(None if count is not None else seconds, count, rounds)
    report = Report(
        command=" ".join(["bench/devices.py", *sys.argv[1:]]),
        machine=machine(),
        budget=(f"{count:,} ops" if count is not None else f"{seconds:g} s")
        + f" per side in {2 * rounds} slices",
    )
    console.print(f"[bold]machine[/] {report.machine}")
    # Spawned before any twin or progress thread exists, and only once.
    producer = ScannerProducer() if Measurement.SCANNER in chosen else None
    progress = progress_bars(
        TextColumn("{task.description:<26}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[ops]:>10} ops"),
        TimeElapsedColumn(),
    )
    try:
        with progress:
            if producer is not None:
                report.figures.append(measure_scanner(producer, budget, baud, progress))
            if Measurement.MTSICS in chosen:
                report.figures.extend(measure_mtsics(budget, progress))
            if Measurement.MODBUS in chosen:
                report.figures.extend(measure_modbus(budget, progress, workdir))
            if Measurement.ZPL in chosen:
                figure, problems = measure_zpl(budget, progress, workdir)
                report.figures.append(figure)
                report.problems.extend(problems)
    finally:
        if producer is not None:
            producer.shutdown()
    finish(report, print_report, json_out)


if __name__ == "__main__":
    app()
