"""The serial line driver against the scanner twin over a real pty."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.scanners import Scan, Scanner, SerialLineScanner, SerialScannerConfig
from simulators.scanner import ScannerTwin
from tests.patience import patience_timeout

GS = "\x1d"
GTIN_A = "09506000134352"
GTIN_B = "09501101530003"
MakeScanner = Callable[..., SerialLineScanner]


def connected(make_scanner: MakeScanner, **overrides: object) -> SerialLineScanner:
    """A driver that has opened the port, so nothing the twin sends next is flushed away."""
    scanner = make_scanner(**overrides)
    assert scanner.read_scan(0) is None
    assert scanner.status().state == "connected"
    return scanner


def read_scans(scanner: Scanner, count: int, within: float = 3.0) -> list[Scan]:
    scans: list[Scan] = []
    give_up_at = time.monotonic() + within
    while len(scans) < count and time.monotonic() < give_up_at:
        scan = scanner.read_scan(0.2)
        if scan is not None:
            scans.append(scan)
    return scans


def wait_for_state(scanner: Scanner, state: str, within: float) -> float:
    """Keep reading (the driver only acts inside read_scan) until ``state``; return the time."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if scanner.status().state == state:
            return time.monotonic() - started
        assert scanner.read_scan(0.05) is None
    pytest.fail(f"still {scanner.status().state!r}, wanted {state!r} within {within} s")


def test_driver_is_a_scanner(make_scanner: MakeScanner) -> None:
    assert isinstance(make_scanner(), Scanner)


def test_scans_arrive_in_order_with_their_fields(
    twin: ScannerTwin, make_scanner: MakeScanner
) -> None:
    scanner = connected(make_scanner)
    before = datetime.datetime.now(datetime.UTC)
    for n in range(20):
        twin.send(f"01{GTIN_A}10LOT{n:03d}{GS}17270300", symbology="]C1")
    twin.send("9506000134352", symbology="]E0")

    scans = read_scans(scanner, 21)

    assert [s.gs1.lot for s in scans[:20] if s.gs1] == [f"LOT{n:03d}" for n in range(20)]
    first = scans[0]
    assert first.device_id == "dock-1-scanner"
    assert first.raw == f"]C101{GTIN_A}10LOT000{GS}17270300".encode()
    assert first.symbology == "]C1"
    assert first.gs1 is not None
    assert first.gs1.gtin == GTIN_A
    assert first.gs1.expiry == datetime.date(2027, 3, 31)
    assert first.received_at.tzinfo is datetime.UTC
    assert first.received_at >= before
    assert (scans[20].symbology, scans[20].data, scans[20].gs1) == ("]E0", "9506000134352", None)
    assert scanner.status().scans == 21


def test_garbage_half_and_overlong_lines_are_counted_not_scanned(
    twin: ScannerTwin, make_scanner: MakeScanner
) -> None:
    scanner = connected(make_scanner, max_length=64)

    twin.send(f"01{GTIN_A}", symbology="]C1")
    twin.send_garbage()
    twin.send(f"01{GTIN_B}", symbology="]C1")
    twin.send_half_line()
    good = read_scans(scanner, 2)
    assert scanner.read_scan(0.6) is None  # the half line expires while we wait
    twin.send("X" * 500)
    twin.send("AFTER-THE-NOISE")
    good += read_scans(scanner, 1)

    assert [s.data for s in good] == [f"01{GTIN_A}", f"01{GTIN_B}", "AFTER-THE-NOISE"]
    status = scanner.status()
    assert status.scans == 3
    assert dict(status.errors) == {
        "half_line": 1,
        "too_long": 1,
        "not_printable": 1,
        "gs1_invalid": 0,
        "empty": 0,
        "io": 0,
        "stale_input": 0,
    }


def test_input_sent_while_the_port_was_closed_is_counted_and_logged_at_open(
    twin: ScannerTwin, make_scanner: MakeScanner, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent restarted: what the scanner sent meanwhile is not booked, but reported."""
    before = connected(make_scanner)
    twin.send("READ-BY-THE-FIRST")
    assert [s.data for s in read_scans(before, 1)] == ["READ-BY-THE-FIRST"]
    before.close()  # the agent stops
    for n in range(3):
        twin.send(f"WHILE-DOWN-{n}", symbology="]E0")  # the dock goes on scanning

    with caplog.at_level(logging.WARNING, logger="device_drivers.scanner"):
        after = connected(make_scanner)
    twin.send("AFTER")
    assert [s.data for s in read_scans(after, 1)] == ["AFTER"], "stale lines are not scans"

    status = after.status()
    assert status.errors["stale_input"] == 3
    assert status.scans == 1
    [record] = [r for r in caplog.records if r.__dict__.get("event") == "stale_input_discarded"]
    assert (record.__dict__["lines"], record.__dict__["bytes"]) == (3, 3 * len("]E0WHILE-DOWN-0\r"))
    assert record.__dict__["device"] == "dock-1-scanner"
    assert all(f"WHILE-DOWN-{n}" in record.__dict__["samples"][n] for n in range(3))
    assert "scan those cartons again" in record.getMessage()


def test_gs1_label_with_bad_check_digit_is_counted_and_dropped(
    twin: ScannerTwin, make_scanner: MakeScanner
) -> None:
    scanner = connected(make_scanner)
    twin.send("0109506000134353", symbology="]C1")
    twin.send(f"01{GTIN_A}10LOT4217250600", symbology="]C1")  # FNC1 lost after the lot
    twin.send(f"01{GTIN_A}", symbology="]C1")

    scans = read_scans(scanner, 1)

    assert [s.data for s in scans] == [f"01{GTIN_A}"]
    status = scanner.status()
    assert status.errors["gs1_invalid"] == 2
    assert status.last_error is not None
    assert status.last_error.startswith("gs1_invalid")


def test_a_misread_ean_13_is_counted_logged_and_dropped(
    twin: ScannerTwin, make_scanner: MakeScanner, caplog: pytest.LogCaptureFixture
) -> None:
    scanner = connected(make_scanner)
    with caplog.at_level(logging.WARNING, logger="device_drivers.scanner"):
        twin.send("9506000134353", symbology="]E0")  # check digit 3; 2 is right
        twin.send("9506000134352", symbology="]E0")
        scans = read_scans(scanner, 1)
        assert scanner.read_scan(0.3) is None

    assert [s.data for s in scans] == ["9506000134352"]
    status = scanner.status()
    assert status.errors["gs1_invalid"] == 1
    assert status.last_error is not None
    assert "wrong check digit in EAN-13 9506000134353" in status.last_error
    [record] = [r for r in caplog.records if r.name == "device_drivers.scanner"]
    assert record.__dict__["reason"] == "gs1_invalid"


def test_rejected_lines_are_logged_with_device_and_reason(
    twin: ScannerTwin, make_scanner: MakeScanner, caplog: pytest.LogCaptureFixture
) -> None:
    scanner = connected(make_scanner)
    with caplog.at_level(logging.WARNING, logger="device_drivers.scanner"):
        twin.send_garbage()
        twin.send("OK")
        assert [s.data for s in read_scans(scanner, 1)] == ["OK"]
    [record] = [r for r in caplog.records if r.name == "device_drivers.scanner"]
    assert record.__dict__["device"] == "dock-1-scanner"
    assert record.__dict__["reason"] == "not_printable"


@pytest.mark.parametrize(
    ("sent", "configured"), [(b"\r", "CR"), (b"\n", "LF"), (b"\r\n", "CRLF"), (b"\r\n", "CR")]
)
def test_terminators(
    scanner_link: Path, make_scanner: MakeScanner, sent: bytes, configured: str
) -> None:
    with ScannerTwin(link=scanner_link, terminator=sent) as twin:
        scanner = connected(make_scanner, terminator=configured)
        for n in range(3):
            twin.send(f"CODE{n}")
        assert [s.data for s in read_scans(scanner, 3)] == ["CODE0", "CODE1", "CODE2"]
        assert sum(scanner.status().errors.values()) == 0


def test_pipe_as_fnc1(twin: ScannerTwin, make_scanner: MakeScanner) -> None:
    scanner = connected(make_scanner, fnc1_separator="|")
    twin.send(f"01{GTIN_A}10LOT42|3103001250", symbology="]C1")
    [scan] = read_scans(scanner, 1)
    assert scan.gs1 is not None
    assert scan.gs1.lot == "LOT42"
    assert str(scan.gs1.net_weight_kg) == "1.250"


def test_run_of_garbage_degrades_until_a_good_line(
    twin: ScannerTwin, make_scanner: MakeScanner
) -> None:
    scanner = connected(make_scanner)
    for _ in range(3):
        twin.send_garbage()
    assert scanner.read_scan(0.3) is None
    assert scanner.status().state == "degraded"
    twin.send("OK")
    assert [s.data for s in read_scans(scanner, 1)] == ["OK"]
    assert scanner.status().state == "connected"


def test_reconnects_after_the_scanner_is_unplugged_and_back(
    scanner_link: Path, make_scanner: MakeScanner
) -> None:
    first = ScannerTwin(link=scanner_link)
    try:
        scanner = connected(make_scanner)
        first.send("BEFORE")
        assert [s.data for s in read_scans(scanner, 1)] == ["BEFORE"]
    finally:
        first.close()  # unplugged

    wait_for_state(scanner, "disconnected", within=1.0)
    assert scanner.read_scan(0.3) is None  # keeps retrying; never raises
    assert scanner.status().errors["io"] == 1

    with ScannerTwin(link=scanner_link) as second:  # plugged back, new pty behind the link
        took = wait_for_state(scanner, "connected", within=2.5)
        second.send("AFTER")
        assert [s.data for s in read_scans(scanner, 1, within=2.0)] == ["AFTER"]
    assert took < patience_timeout(2.1)
    status = scanner.status()
    assert status.reconnects == 1
    assert status.errors["io"] == 1  # one outage, however many retries


def test_missing_port_is_reported_not_raised(tmp_path: Path, no_leaks: None) -> None:
    config = SerialScannerConfig(device_id="ghost", port=tmp_path / "no-such-scanner")
    with SerialLineScanner(config) as scanner:
        started = time.monotonic()
        assert scanner.read_scan(0.5) is None
        assert time.monotonic() - started < 1.0
        status = scanner.status()
    assert status.state == "disconnected"
    assert status.errors["io"] == 1
    assert status.last_error is not None
    assert "no-such-scanner" in status.last_error


def test_close_wakes_a_blocked_reader(twin: ScannerTwin, make_scanner: MakeScanner) -> None:
    scanner = connected(make_scanner)
    results: list[Scan | None] = []
    reader = threading.Thread(target=lambda: results.append(scanner.read_scan(10)))
    reader.start()
    time.sleep(0.1)
    started = time.monotonic()
    scanner.close()
    reader.join(timeout=patience_timeout(2))
    assert not reader.is_alive()
    assert results == [None]
    assert time.monotonic() - started < 1.0
    assert scanner.read_scan(0.1) is None
    assert scanner.status().state == "disconnected"


def test_status_is_json_ready(twin: ScannerTwin, make_scanner: MakeScanner) -> None:
    scanner = connected(make_scanner)
    twin.send("OK")
    read_scans(scanner, 1)
    as_json = json.loads(json.dumps(scanner.status().as_dict()))
    assert as_json["device_id"] == "dock-1-scanner"
    assert as_json["state"] == "connected"
    assert as_json["scans"] == 1
    assert as_json["errors"]["io"] == 0
    assert as_json["reconnects"] == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"device_id": ""},
        {"terminator": "CRCR"},
        {"gs1": "sometimes"},
        {"fnc1_separator": "A"},
        {"max_length": 0},
        {"baudrate": 0},
        {"reconnect_min_delay": 5.0},
    ],
)
def test_config_mistakes_are_caught_up_front(bad: dict[str, object]) -> None:
    settings: dict[str, object] = {"device_id": "d", "port": "/dev/null", **bad}
    with pytest.raises(DeviceConfigError):
        SerialScannerConfig(**settings)  # type: ignore[arg-type]
