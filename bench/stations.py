"""Receiving-station benchmark: from a carton's scan to its label, at one dock.

One station as the edge agent runs it, with its real drivers on the device twins: the
scanner twin writes a GS1-128 carton read (SSCC, GTIN, expiry, lot, count) into a pty that
``SerialLineScanner`` reads; the receiving station matches it to an open PO line, weighs it
on the MT-SICS scale twin (``MtSicsScale`` over a pty; the twin's weight is already stable,
so the scale's settle time is left out as the issue asks), books the receipt with its label
in one ledger transaction (a real SQLite file, ``synchronous=FULL``), and the label spooler
hands the label to ``ZplPrinter``, which sends it to the ZPL printer twin on loopback TCP
and confirms it from the printer's label counter.

Per carton it measures, one carton at a time as at a real dock:

* **scan → label sent**: from the scanner twin's write to the moment the spooler hands the
  label to the printer driver (the figure the issue's aim, p99 under 30 ms, is about);
* **scan → label printed**: until the driver has the printer's word that it printed
  (adds the printer's confirmation: its status polls and settle time);

and compares them with a **floor measured in the same run**: the same bytes through the
same pty read raw, one raw ``SI`` round trip on the same scale pty, one raw SQLite
transaction writing the same rows (event, outbox, carton, label) in a ledger of the same
settings, and one raw TCP send of the same ZPL format to the twin. Each carton is one
pair: floor, then station, so load on the machine weighs on both alike.

**Cartons per minute** at realistic serial speeds: a pty carries bytes at memory speed,
so the time a real line needs for the scanner's read and the scale's ``SI`` exchange at
``--baud`` (8N1) is added to the measured cycle, and the result is what one station can do
with no operator in the loop (a ceiling: a person moves the carton in seconds).

Run ``.venv/bin/python bench/stations.py --help``. Figures: ``docs/performance.md``.
"""

from __future__ import annotations

import os
import select
import socket
import sqlite3
import statistics
import tempfile
import termios
import threading
import time
import tty
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from common import cli, console, finish, machine_info, progress_bars, table
from rich.progress import BarColumn, TaskProgressColumn, TextColumn

from device_drivers.printers import LabelJob, LabelPrinter
from device_drivers.printers.base import JobResult
from device_drivers.registry import open_printer, open_scale, open_scanner
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.labels import LabelSpooler
from edge_agent.stations.receiving import ReceivingStation
from jxc.feed import ChangePage
from simulators.printer import ZplPrinterTwin
from simulators.scale import MtSicsScaleTwin
from simulators.scanner import ScannerTwin

app = cli(__doc__)

GTIN = "09506000134376"
GS = "\x1d"
SI_REPLY = b"S S      5.000 kg\r\n"
"""An MT-SICS stable reply as the twin sends it (its length sets the wire time)."""


def sscc(serial: int) -> str:
    """An SSCC-18 with its GS1 check digit."""
    body = f"09506000{serial:09d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def carton_read(serial: int, expiry: date) -> str:
    return f"00{sscc(serial)}01{GTIN}17{expiry:%y%m%d}10L{serial % 97}{GS}3720"


def catalog_page(cartons: int) -> ChangePage:
    """The item, its barcode and one open PO line big enough for every carton."""
    changes: list[dict[str, Any]] = [
        {
            "entity": "item",
            "key": "AMOX-500",
            "data": {
                "item_code": "AMOX-500",
                "uom": "BOX",
                "expiry_tracked": True,
                "lot_tracked": True,
                "min_remaining_days": 180,
                "unit_weight": "0.250",
                "weight_tolerance": "3",
            },
        },
        {"entity": "barcode", "key": GTIN, "data": {"barcode": GTIN, "item_code": "AMOX-500"}},
        {
            "entity": "po_line",
            "key": "PO1 1",
            "data": {
                "po_id": "PO1",
                "line_no": 1,
                "supplier": "SUP1",
                "item_code": "AMOX-500",
                "qty": str(20 * (cartons + 10)),
                "uom": "BOX",
                "order_qty": str(20 * (cartons + 10)),
                "order_uom": "BOX",
                "over_tolerance": "0",
                "under_tolerance": "0",
            },
        },
    ]
    body = [{"version": n, "op": "upsert", **c} for n, c in enumerate(changes, start=1)]
    return ChangePage.model_validate(
        {"site_id": "S01", "changes": body, "next_cursor": len(body), "has_more": False}
    )


class TimedPrinter:
    """The real driver, with the moments each label was handed over and confirmed."""

    def __init__(self, inner: LabelPrinter) -> None:
        self.inner = inner
        self.sent: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.changed = threading.Condition()

    def print_label(self, job: LabelJob) -> JobResult:
        seq = job.label.seq or 0
        with self.changed:
            self.sent[seq] = time.perf_counter()
        result = self.inner.print_label(job)
        with self.changed:
            self.done[seq] = time.perf_counter()
            self.changed.notify_all()
        return result

    def wait_done(self, seq: int, timeout: float) -> float:
        with self.changed:
            if not self.changed.wait_for(lambda: seq in self.done, timeout):
                raise RuntimeError(f"label {seq} not printed within {timeout} s")
            return self.done[seq]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Figures:
    name: str
    samples_ms: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Report:
    cartons: int
    baud: int
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    cartons_per_minute: dict[str, float] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)


class Floor:
    """The same work done raw on the same devices and disk: the least it could cost."""

    def __init__(self, root: Path, scale_fd: int, printer_port: int) -> None:
        self.db = sqlite3.connect(root / "floor.db", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id, body)")
        self.db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY)")
        self.db.execute("CREATE TABLE cartons (carton TEXT PRIMARY KEY, seq)")
        self.db.execute("CREATE TABLE labels (seq INTEGER PRIMARY KEY, printer, state)")
        self.scale = scale_fd
        self.printer = socket.create_connection(("127.0.0.1", printer_port))
        self.seq = 0

    def carton(self, scanner_twin: ScannerTwin, scanner_fd: int, read: str, zpl: bytes) -> float:
        """One carton's raw work, in ms: read the scan, weigh, write, send the label."""
        start = time.perf_counter()
        scanner_twin.send(read, "]C1")
        got = b""
        while not got.endswith(b"\r"):
            got += _read_some(scanner_fd)
        os.write(self.scale, b"SI\r\n")
        reply = b""
        while not reply.endswith(b"\n"):
            reply += _read_some(self.scale)
        self.seq += 1
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT INTO events VALUES (?, ?, ?)", (self.seq, str(uuid.uuid4()), got.decode())
        )
        self.db.execute("INSERT INTO outbox VALUES (?)", (self.seq,))
        self.db.execute("INSERT INTO cartons VALUES (?, ?)", (read[2:20], self.seq))
        self.db.execute("INSERT INTO labels VALUES (?, 'p', 'pending')", (self.seq,))
        self.db.execute("COMMIT")
        self.printer.sendall(zpl)
        return (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.db.close()
        os.close(self.scale)
        self.printer.close()


def _read_some(fd: int) -> bytes:
    select.select([fd], [], [], 5.0)
    return os.read(fd, 4096)


@app.command()
def main(
    cartons: Annotated[int, typer.Option(help="cartons to receive")] = 300,
    baud: Annotated[int, typer.Option(help="line rate of scanner and scale (8N1)")] = 9600,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report here")] = None,
) -> None:
    """Scan-to-label latency of one receiving station on the device twins, against a floor."""
    report = Report(cartons=cartons, baud=baud, machine=machine_info())
    with tempfile.TemporaryDirectory(prefix="jxc-bench-stations-") as tmp:
        root = Path(tmp)
        (root / "dev").mkdir()
        scale_twin = MtSicsScaleTwin(root / "dev" / "scale-1", weight=Decimal("5.0"), unit="kg")
        printer_twin = ZplPrinterTwin()
        scanner_twin = ScannerTwin(link=root / "dev" / "scanner-1")
        floor_scanner = ScannerTwin(link=root / "dev" / "scanner-floor")
        floor_scale = MtSicsScaleTwin(root / "dev" / "scale-floor", weight=Decimal("5.0"))
        scanner = open_scanner("serial-line", "scanner-1", {"port": str(scanner_twin.link)})
        scale = open_scale(
            "mt-sics", "scale-1", {"address": str(root / "dev" / "scale-1"), "reply_timeout": 1}
        )
        printer = TimedPrinter(
            open_printer(
                "zpl",
                "printer-1",
                {
                    "host": "127.0.0.1",
                    "port": printer_twin.port,
                    "journal_path": str(root / "printer-1.journal"),
                    "poll_interval": 0.005,
                    "settle_time": 0.0,
                },
            )
        )
        ledger = Ledger(root / "edge.db", site_id="S01")
        catalog = Catalog(ledger)
        catalog.apply(catalog_page(cartons))
        station = ReceivingStation(
            ledger,
            catalog,
            location="DOCK-1",
            uom="EA",
            scale=scale,
            purchase_orders=True,
            quarantine_location="QUAR",
            label_printer="printer-1",
        )
        spooler = LabelSpooler(ledger, printer, "printer-1")  # type: ignore[arg-type]
        stop = threading.Event()
        booked: list[int] = []
        errors: list[BaseException] = []

        def read_scans() -> None:
            while not stop.is_set():
                scan = scanner.read_scan(timeout=0.2)
                if scan is None:
                    continue
                try:
                    booked.append(station.on_scan(scan).seq)
                except Exception as exc:  # a bench must say why a carton was not booked
                    errors.append(exc)

        threads = [
            threading.Thread(target=read_scans, daemon=True),
            threading.Thread(target=spooler.run, args=(stop,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        floor_fd = _raw_pty(floor_scanner.device_path)
        floor_printer = ZplPrinterTwin()
        floor = Floor(root, _raw_pty(root / "dev" / "scale-floor"), floor_printer.port)
        expiry = datetime.now(UTC).date() + timedelta(days=400)
        sent_ms: list[float] = []
        printed_ms: list[float] = []
        cycle_ms: list[float] = []
        floor_ms: list[float] = []
        zpl = receipt_zpl(expiry)
        with progress_bars(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()
        ) as bars:
            task = bars.add_task("cartons", total=cartons)
            for n in range(1, cartons + 1):
                floor_ms.append(
                    floor.carton(floor_scanner, floor_fd, carton_read(10**6 + n, expiry), zpl)
                )
                start = time.perf_counter()
                scanner_twin.send(carton_read(n, expiry), "]C1")
                done = printer.wait_done(n, 30.0)
                if errors:
                    raise SystemExit(f"carton {n} was not booked: {errors[0]}")
                sent_ms.append((printer.sent[n] - start) * 1000)
                printed_ms.append((done - start) * 1000)
                cycle_ms.append((time.perf_counter() - start) * 1000)
                bars.advance(task)
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        assert booked == list(range(1, cartons + 1)), "every carton booked once, in order"
        assert len(printer_twin.labels()) == cartons, "one label per carton"
        floor.close()
        os.close(floor_fd)
        floor_printer.close()
        for closing in (scanner, scale, printer.inner, ledger, scanner_twin, floor_scanner):
            closing.close()
        scale_twin.close()
        floor_scale.close()
        printer_twin.close()

    read_bytes = len(("]C1" + carton_read(1, expiry)).encode()) + 1
    wire_ms = (read_bytes + len(b"SI\r\n") + len(SI_REPLY)) * 10 / baud * 1000
    for figures in (
        Figures("scan → label sent", sent_ms),
        Figures("scan → label printed", printed_ms),
        Figures("floor (raw read, SI, insert, send)", floor_ms),
    ):
        report.figures[figures.name] = {
            "p50_ms": statistics.median(figures.samples_ms),
            "p99_ms": figures.quantile(0.99),
            "max_ms": max(figures.samples_ms),
        }
    cycle = statistics.mean(cycle_ms)
    report.cartons_per_minute = {
        "measured (pty, no line rate)": 60_000 / cycle,
        f"with {baud} baud scanner and scale": 60_000 / (cycle + wire_ms),
        "wire_ms_per_carton": wire_ms,
    }
    finish(report, print_report, json_out)


def receipt_zpl(expiry: date) -> bytes:
    """A ZPL format of the size the station's labels have (for the floor's raw send)."""
    text = f"AMOX-500 20 BOX L1 {expiry:%Y-%m-%d} DOCK-1"
    return (
        f"^XA^FO20,20^A0N,40,40^FD{text}^FS^FO20,80^BQN,2,6^FDQA,jxc:S01:1:{uuid.uuid4()}^FS^PQ1^XZ"
    ).encode()


def _raw_pty(path: str | Path) -> int:
    """The device side of a twin's pty, opened raw, as the floor reads it."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
    return fd


def print_report(report: Report) -> None:
    shown = table(
        "one receiving station, one carton at a time (ms)",
        ["path", "p50", "p99", "max"],
        left=["path"],
    )
    for name, values in report.figures.items():
        shown.add_row(name, *(f"{values[k]:.2f}" for k in ("p50_ms", "p99_ms", "max_ms")))
    console.print(shown)
    per_minute = table(
        "cartons per minute, no operator in the loop", ["line", "cartons/min"], left=["line"]
    )
    for name, value in report.cartons_per_minute.items():
        if name != "wire_ms_per_carton":
            per_minute.add_row(name, f"{value:,.0f}")
    console.print(per_minute)
    console.print(
        f"wire time at {report.baud} baud per carton (scanner read + SI exchange): "
        f"{report.cartons_per_minute['wire_ms_per_carton']:.1f} ms"
    )


if __name__ == "__main__":
    app()
