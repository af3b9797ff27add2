"""The receiving station with a real scale and a real printer: drivers against their twins.

Goods kept by weight are booked at the scale's stable net weight; a weighing that does
not settle books nothing. Every booking owes a label, queued with the event, printed once
by the spooler whatever the printer does, and still printed after an agent restart.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest

from device_drivers.printers import (
    JobResult,
    LabelJob,
    PrinterStatus,
    ZplPrinter,
    ZplPrinterConfig,
)
from device_drivers.registry import open_printer
from device_drivers.scales import MtSicsScale, MtSicsScaleConfig
from device_drivers.scanners import Scan
from device_drivers.status import DeviceStatus
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.labels import IN_DOUBT_ATTEMPTS, LabelSpooler
from edge_agent.stations.receiving import ReceivingStation, WeighingError
from jxc.feed import ChangePage
from simulators.printer import ZplPrinterTwin
from simulators.scale import MtSicsScaleTwin
from simulators.tspl_printer import TsplPrinterTwin
from tests.patience import patience_timeout

T = TypeVar("T")

RICE = {"item_code": "RICE-BULK", "name": "Jasmine rice, bulk", "uom": "kg"}
RICE_SACK = {"barcode": "09506000134376", "item_code": "RICE-BULK", "qty_per": "1"}
MUG = {"item_code": "MUG-WHITE", "name": "White mug", "uom": "EA"}
MUG_CODE = {"barcode": "5901234123457", "item_code": "MUG-WHITE", "qty_per": "1"}


def eventually(probe: Callable[[], T | None], *, within: float = 10.0) -> T:
    within = patience_timeout(within)
    end = time.monotonic() + within
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {within} s")


def master_data() -> ChangePage:
    changes = []
    for version, (entity, data) in enumerate(
        [("item", RICE), ("barcode", RICE_SACK), ("item", MUG), ("barcode", MUG_CODE)], start=1
    ):
        key = data["item_code"] if entity == "item" else data["barcode"]
        changes.append(
            {"version": version, "entity": entity, "key": key, "op": "upsert", "data": data}
        )
    return ChangePage.model_validate(
        {"site_id": "S01", "changes": changes, "next_cursor": len(changes), "has_more": False}
    )


def scan(code: str) -> Scan:
    return Scan(
        device_id="dock-1",
        raw=code.encode(),
        data=code,
        symbology=None,
        gs1=None,
        received_at=datetime.now(UTC),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    Catalog(opened).apply(master_data())
    yield opened
    opened.close()


@pytest.fixture
def scale_twin(tmp_path: Path) -> Iterator[MtSicsScaleTwin]:
    twin = MtSicsScaleTwin(tmp_path / "scale-1", weight=Decimal("25.04"), unit="kg")
    yield twin
    twin.close()


@pytest.fixture
def scale(scale_twin: MtSicsScaleTwin, tmp_path: Path) -> Iterator[MtSicsScale]:
    driver = MtSicsScale(
        MtSicsScaleConfig(device_id="scale-1", address=tmp_path / "scale-1", reply_timeout=0.3)
    )
    yield driver
    driver.close()


@pytest.fixture
def printer_twin() -> Iterator[ZplPrinterTwin]:
    with ZplPrinterTwin() as twin:
        yield twin


def zpl_printer(twin: ZplPrinterTwin, journal: Path) -> ZplPrinter:
    return ZplPrinter(
        ZplPrinterConfig(
            device_id="printer-1",
            host="127.0.0.1",
            port=twin.port,
            reply_timeout=0.3,
            job_timeout=3.0,
            poll_interval=0.03,
            settle_time=0.1,
            journal_path=journal,
        )
    )


def test_goods_kept_by_weight_are_booked_at_the_stable_net_weight(
    ledger: Ledger, scale: MtSicsScale, scale_twin: MtSicsScaleTwin
) -> None:
    station = ReceivingStation(ledger, Catalog(ledger), location="DOCK-1", uom="EA", scale=scale)
    scale_twin.set_weight(Decimal("18.5"), "kg", settle=0.4)  # still moving when scanned
    event = station.on_scan(scan(RICE_SACK["barcode"]))
    assert (event.item, event.qty, event.uom) == ("RICE-BULK", Decimal("18.50"), "kg")
    counted = station.on_scan(scan(MUG_CODE["barcode"]))
    assert (counted.item, counted.qty) == ("MUG-WHITE", Decimal(1))  # counted, not weighed
    assert (station.weighings, station.failed_weighings) == (1, 0)


def test_a_weight_that_never_settles_books_nothing(
    ledger: Ledger, scale: MtSicsScale, scale_twin: MtSicsScaleTwin
) -> None:
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", scale=scale, weigh_timeout_s=0.6
    )
    scale_twin.wobble(5.0)
    with pytest.raises(WeighingError, match="no stable weight"):
        station.on_scan(scan(RICE_SACK["barcode"]))
    scale_twin.overload()
    with pytest.raises(WeighingError, match="RICE-BULK"):
        station.on_scan(scan(RICE_SACK["barcode"]))
    assert ledger.counts().last_seq == 0
    assert station.failed_weighings == 2


def test_an_empty_scale_books_nothing(
    ledger: Ledger, scale: MtSicsScale, scale_twin: MtSicsScaleTwin
) -> None:
    station = ReceivingStation(ledger, Catalog(ledger), location="DOCK-1", uom="EA", scale=scale)
    scale_twin.set_weight(Decimal(0), "kg")
    with pytest.raises(WeighingError, match="shows 0"):
        station.on_scan(scan(RICE_SACK["barcode"]))
    assert ledger.counts().last_seq == 0


def test_every_booking_gets_its_label_once(
    ledger: Ledger, printer_twin: ZplPrinterTwin, tmp_path: Path
) -> None:
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    booked = [station.on_scan(scan(MUG_CODE["barcode"])) for _ in range(3)]
    printer = zpl_printer(printer_twin, tmp_path / "printer-1.journal")
    spooler = LabelSpooler(ledger, printer, "printer-1")
    stop = threading.Event()
    worker = threading.Thread(target=spooler.run, args=(stop,))
    worker.start()
    try:
        eventually(lambda: len(printer_twin.labels()) == 3)
        eventually(lambda: ledger.label_counts("printer-1") == {"printed": 3})
    finally:
        stop.set()
        worker.join(timeout=patience_timeout(10))
        printer.close()
    assert printer_twin.job_ids() == [str(event.event_id) for event in booked]
    texts = [field.data for field in printer_twin.labels()[0].fields]
    assert "MUG-WHITE" in texts
    assert "QTY 1 EA" in texts
    assert spooler.state.printed == 3


def test_labels_wait_for_paper_and_survive_an_agent_restart(
    ledger: Ledger, printer_twin: ZplPrinterTwin, tmp_path: Path
) -> None:
    """Paper out: labels stay owed, scanning goes on; paper back after a restart of the
    agent (new driver, same journal, same ledger): each label printed exactly once."""
    journal = tmp_path / "printer-1.journal"
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    printer_twin.set_paper_out(True)
    first = zpl_printer(printer_twin, journal)
    spooler = LabelSpooler(ledger, first, "printer-1")
    stop = threading.Event()
    worker = threading.Thread(target=spooler.run, args=(stop,))
    worker.start()
    booked = [station.on_scan(scan(MUG_CODE["barcode"])) for _ in range(2)]
    eventually(lambda: spooler.state.retries >= 1)
    stop.set()
    worker.join(timeout=patience_timeout(10))
    first.close()
    assert printer_twin.labels() == []
    assert ledger.label_counts("printer-1") == {"pending": 2}

    printer_twin.set_paper_out(False)
    second = zpl_printer(printer_twin, journal)
    again = LabelSpooler(ledger, second, "printer-1")
    stop = threading.Event()
    worker = threading.Thread(target=again.run, args=(stop,))
    worker.start()
    try:
        eventually(lambda: ledger.label_counts("printer-1") == {"printed": 2})
    finally:
        stop.set()
        worker.join(timeout=patience_timeout(10))
        second.close()
    assert printer_twin.job_ids() == [str(event.event_id) for event in booked]


def test_a_weight_in_pounds_is_booked_in_kilograms_to_six_places(
    ledger: Ledger, tmp_path: Path
) -> None:
    """55.12 lb is exactly 25.0020114344 kg, more places than the ledger holds."""
    twin = MtSicsScaleTwin(tmp_path / "scale-lb", weight=Decimal("55.12"), unit="lb")
    driver = MtSicsScale(MtSicsScaleConfig(device_id="scale-lb", address=tmp_path / "scale-lb"))
    try:
        station = ReceivingStation(
            ledger, Catalog(ledger), location="DOCK-1", uom="EA", scale=driver
        )
        event = station.on_scan(scan(RICE_SACK["barcode"]))
    finally:
        driver.close()
        twin.close()
    assert (event.qty, event.uom) == (Decimal("25.002011"), "kg")


class FlakyLedger:
    """The real ledger, but settling a label fails once (another process holds the lock)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.failures = 1

    def __getattr__(self, name: str) -> object:
        return getattr(self.ledger, name)

    def settle_label(self, *args: object, **kwargs: object) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.ledger.settle_label(*args, **kwargs)  # type: ignore[arg-type]


def test_the_spooler_survives_a_failure_and_prints_on(
    ledger: Ledger, printer_twin: ZplPrinterTwin, tmp_path: Path
) -> None:
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    booked = [station.on_scan(scan(MUG_CODE["barcode"])) for _ in range(2)]
    printer = zpl_printer(printer_twin, tmp_path / "printer-1.journal")
    spooler = LabelSpooler(FlakyLedger(ledger), printer, "printer-1")  # type: ignore[arg-type]
    stop = threading.Event()
    worker = threading.Thread(target=spooler.run, args=(stop,))
    worker.start()
    try:
        eventually(lambda: ledger.label_counts("printer-1") == {"printed": 2})
    finally:
        stop.set()
        worker.join(timeout=patience_timeout(10))
        printer.close()
    assert spooler.state.last_error == "OperationalError: database is locked"
    # The first label printed before its settling failed; the journal answered the retry.
    assert printer_twin.job_ids() == [str(event.event_id) for event in booked]


class DoubtfulPrinter:
    """A printer that can never say whether a job printed (no label counter, a drop)."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def print_label(self, job: LabelJob) -> JobResult:
        self.jobs.append(job.job_id)
        return JobResult(job.job_id, "in_doubt", detail="connection dropped mid-job")

    def printer_status(self) -> PrinterStatus:
        return PrinterStatus(online=True)

    def status(self) -> DeviceStatus:
        return DeviceStatus("doubtful", "connected")

    def close(self) -> None:
        pass


def test_a_label_in_doubt_goes_to_a_person_and_does_not_block_the_rest(ledger: Ledger) -> None:
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    first, second = (station.on_scan(scan(MUG_CODE["barcode"])) for _ in range(2))
    printer = DoubtfulPrinter()
    spooler = LabelSpooler(ledger, printer, "printer-1")
    stop = threading.Event()
    for _ in range(2 * IN_DOUBT_ATTEMPTS):
        spooler.run_once(stop)
    assert ledger.label_counts("printer-1") == {"failed": 2}
    assert printer.jobs == [str(first.event_id)] * 3 + [str(second.event_id)] * 3
    assert spooler.state.last_error is not None
    assert "check the printer" in spooler.state.last_error


def test_a_standby_agent_prints_nothing(ledger: Ledger) -> None:
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    station.on_scan(scan(MUG_CODE["barcode"]))
    printer = DoubtfulPrinter()
    spooler = LabelSpooler(ledger, printer, "printer-1", may_print=lambda: False)
    assert spooler.run_once(threading.Event()) is True
    assert printer.jobs == []
    assert ledger.label_counts("printer-1") == {"pending": 1}


def test_a_reprint_is_a_new_copy_the_printer_prints_again(
    ledger: Ledger, printer_twin: ZplPrinterTwin, tmp_path: Path
) -> None:
    """The journal would answer the old job id without printing; a reprint is copy 1."""
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    event = station.on_scan(scan(MUG_CODE["barcode"]))
    printer = zpl_printer(printer_twin, tmp_path / "printer-1.journal")
    spooler = LabelSpooler(ledger, printer, "printer-1")
    try:
        assert spooler.run_once(threading.Event()) is True
        assert ledger.reprint_labels([event.seq, 99]) == [event.seq]
        [record] = ledger.labels("pending")
        assert (record.seq, record.copy, record.detail) == (event.seq, 1, "reprint requested")
        assert spooler.run_once(threading.Event()) is True
    finally:
        printer.close()
    assert printer_twin.job_ids() == [str(event.event_id), f"{event.event_id}.1"]
    assert [r.state for r in ledger.labels()] == ["printed"]


def test_the_station_prints_the_same_label_in_zpl_and_in_tspl(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A site file picks the language; the station and what the carton shows do not change."""
    station = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", label_printer="printer-1"
    )
    event = station.on_scan(scan(MUG_CODE["barcode"]))
    printed = {}
    for language in ("zpl", "tspl"):
        twin = TsplPrinterTwin() if language == "tspl" else ZplPrinterTwin()
        options = {
            "host": "127.0.0.1",
            "port": twin.port,
            "reply_timeout": 0.5,
            "job_timeout": 5.0,
            "poll_interval": 0.03,
            "settle_time": 0.1,
            "journal_path": str(tmp_path / f"{language}.journal"),
        }
        printer = open_printer(language, "printer-1", options)
        try:
            if language == "tspl":
                ledger.reprint_labels([event.seq])  # a new copy, so a new job id
            spooler = LabelSpooler(ledger, printer, "printer-1")
            assert spooler.run_once(threading.Event())
            [label] = twin.wait_for_labels(1)
        finally:
            printer.close()
            twin.close()
        assert label.problems == ()
        assert label.job_id is not None
        assert label.job_id.startswith(str(event.event_id))
        printed[language] = (
            label.texts,
            sorted((field.kind, field.content) for field in label.symbols),
        )
        assert ledger.label_counts("printer-1") == {"printed": 1}
    assert printed["zpl"] == printed["tspl"]
    texts, symbols = printed["tspl"]
    assert "QTY 1 EA" in texts
    assert ("code128", "MUG-WHITE") in symbols
