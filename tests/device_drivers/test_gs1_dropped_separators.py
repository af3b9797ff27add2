"""A scanner that drops the GS (FNC1) separators, through a real pty: refused, never misbooked.

The same reads go through the same driver with and without the twin's fault, so a refusal
is the fault's doing and not the label's.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.scanners import SerialLineScanner
from device_drivers.scanners.framing import parse_line
from device_drivers.scanners.gs1 import MissingSeparatorError, parse_gs1
from simulators.scanner import ScannerTwin
from tests.patience import patience_timeout

GS = "\x1d"
GTIN = "09506000134352"

MakeScanner = Callable[..., SerialLineScanner]

# Lot, then a date: detectable from the data alone (the tail is a valid expiry).
LOT_THEN_EXPIRY = f"01{GTIN}10LOT42{GS}17261231"
# Lot, then a serial: only detectable when the serial is expected.
LOT_THEN_SERIAL = f"01{GTIN}10LOT42{GS}21SN-1"
# Count, then lot: the count swallows the lot's digits and the rest is no AI at all.
COUNT_THEN_LOT = f"01{GTIN}3012{GS}10LOT7"


def test_biip_alone_would_swallow_the_next_field_into_the_lot() -> None:
    # What the check is for: read greedily, the serial becomes part of the lot.
    data = parse_gs1(LOT_THEN_SERIAL.replace(GS, ""))
    assert data.lot == "LOT4221SN-1"
    assert data.serial is None


def connected(make_scanner: MakeScanner, **overrides: object) -> SerialLineScanner:
    """A driver that has opened the port, so nothing the twin sends next is flushed away."""
    scanner = make_scanner(**overrides)
    assert scanner.read_scan(0) is None
    assert scanner.status().state == "connected"
    return scanner


def refused_count(scanner: SerialLineScanner) -> int:
    return scanner.status().errors["gs1_invalid"]


def wait_for_count(scanner: SerialLineScanner, count: int, within: float = 5.0) -> None:
    give_up_at = time.monotonic() + patience_timeout(within)
    while refused_count(scanner) < count and time.monotonic() < give_up_at:
        assert scanner.read_scan(0.1) is None  # never a scan for a refused read
    assert refused_count(scanner) == count


@pytest.mark.parametrize("read", [LOT_THEN_EXPIRY, COUNT_THEN_LOT])
def test_run_together_fields_are_refused_and_counted(
    twin: ScannerTwin, make_scanner: MakeScanner, read: str, caplog: pytest.LogCaptureFixture
) -> None:
    scanner = connected(make_scanner)
    twin.send(read, symbology="]C1")  # healthy scanner: the read goes through
    scan = scanner.read_scan(5.0)
    assert scan is not None
    assert scan.gs1 is not None

    twin.drop_gs_separators()
    twin.send(read, symbology="]C1")
    wait_for_count(scanner, 1)
    assert scanner.status().state == "connected"  # the wire is fine, the setup is not
    assert any(r.__dict__.get("reason") == "gs1_invalid" for r in caplog.records)

    twin.drop_gs_separators(False)
    twin.send(read, symbology="]C1")
    again = scanner.read_scan(5.0)
    assert again is not None
    assert again.gs1 == scan.gs1
    assert refused_count(scanner) == 1


def test_lot_then_serial_needs_the_serial_to_be_expected(
    twin: ScannerTwin, make_scanner: MakeScanner
) -> None:
    plain = connected(make_scanner)
    twin.drop_gs_separators()
    twin.send(LOT_THEN_SERIAL, symbology="]C1")
    undetectable = plain.read_scan(5.0)
    assert undetectable is not None  # the data alone cannot tell (see gs1.py)
    assert undetectable.gs1 is not None
    assert undetectable.gs1.lot == "LOT4221SN-1"
    plain.close()

    strict = connected(make_scanner, gs1_expected_ais=["01", "10", "21"])
    twin.send(LOT_THEN_SERIAL, symbology="]C1")
    wait_for_count(strict, 1)
    assert "FNC1" in (strict.status().last_error or "")

    twin.drop_gs_separators(False)
    twin.send(LOT_THEN_SERIAL, symbology="]C1")
    scan = strict.read_scan(5.0)
    assert scan is not None
    assert scan.gs1 is not None
    assert (scan.gs1.lot, scan.gs1.serial) == ("LOT42", "SN-1")
    assert refused_count(strict) == 1


def test_expected_ais_missing_without_a_trace_are_not_refused() -> None:
    # A pallet label without a serial is a different label, not a damaged one.
    data = parse_gs1(f"01{GTIN}10LOT42", expected_ais=frozenset({"21"}))
    assert data.lot == "LOT42"


def test_the_refusal_is_its_own_type_and_says_what_to_fix() -> None:
    with pytest.raises(MissingSeparatorError, match="FNC1 separator") as caught:
        parse_line(
            f"]C1{LOT_THEN_SERIAL.replace(GS, '')}".encode(),
            device_id="d",
            received_at=datetime.datetime.now(datetime.UTC),
            gs1_expected_ais=frozenset({"21"}),
        )
    assert caught.value.reason == "gs1_invalid"


@pytest.mark.parametrize("bad", [["99X"], ["1799"], "01", [1]])
def test_expected_ais_are_checked_at_start_up(make_scanner: MakeScanner, bad: object) -> None:
    with pytest.raises(DeviceConfigError, match="gs1_expected_ais"):
        make_scanner(gs1_expected_ais=bad)
