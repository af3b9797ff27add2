"""Drivers are picked by name, and a third party adds one through ``jxc.drivers``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.printers import ZplPrinter
from device_drivers.printers.tspl_printer import TsplPrinter
from device_drivers.registry import driver_names, open_printer, open_scale, open_scanner
from device_drivers.scales import ModbusScale, MqttScale, MtSicsScale, Toledo8217Scale
from device_drivers.scanners import Scanner, SerialLineScanner
from device_drivers.status import Device, DeviceStatus
from tests.out_of_tree_driver import install_plugin


@pytest.fixture
def plugin_on_path(tmp_path: Path) -> Iterator[Path]:
    folder = install_plugin(tmp_path / "site-packages")
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("acme_jxc_driver", None)


def test_built_in_serial_line_driver_is_found_by_name(tmp_path: Path) -> None:
    scanner = open_scanner("serial-line", "dock-1", {"port": str(tmp_path / "nothing-here")})
    try:
        assert isinstance(scanner, SerialLineScanner)
        assert scanner.read_scan(timeout=0.05) is None, "a missing port is a state, not a crash"
        assert scanner.status().state == "disconnected"
    finally:
        scanner.close()


def test_out_of_tree_driver_is_used_by_name(plugin_on_path: Path) -> None:
    assert "acme-scripted" in driver_names()
    scanner = open_scanner("acme-scripted", "acme-1", {"codes": ["A-1", "B-2"]})
    assert isinstance(scanner, Scanner)
    first = scanner.read_scan(timeout=0.1)
    second = scanner.read_scan(timeout=0.1)
    assert first is not None
    assert second is not None
    assert [first.data, second.data] == ["A-1", "B-2"]
    assert scanner.status().scans == 2
    scanner.close()


def test_unknown_driver_names_what_is_installed() -> None:
    with pytest.raises(
        DeviceConfigError, match=r"no device driver named 'acme-laser'.*serial-line"
    ):
        open_scanner("acme-laser", "x", {})


def test_a_driver_that_is_not_a_scanner_is_refused(plugin_on_path: Path) -> None:
    with pytest.raises(DeviceConfigError, match="not a Scanner"):
        open_scanner("acme-wrong", "x", {})


def test_serial_line_option_typo_is_named(tmp_path: Path) -> None:
    with pytest.raises(DeviceConfigError, match="baud_rate"):
        open_scanner("serial-line", "dock-1", {"port": "/dev/null", "baud_rate": 9600})


BUILT_IN = {
    "serial-line": "scanner",
    "mqtt-scanner": "scanner",
    "mt-sics": "scale",
    "toledo-8217": "scale",
    "modbus-scale": "scale",
    "mqtt-scale": "scale",
    "zpl": "printer",
    "tspl": "printer",
}


def test_every_built_in_driver_is_installed_by_name() -> None:
    assert set(BUILT_IN) <= set(driver_names())


@pytest.mark.parametrize(
    ("driver", "options", "made"),
    [
        ("mt-sics", {"address": "tcp://127.0.0.1:9"}, MtSicsScale),
        ("toledo-8217", {"address": "/nonexistent/tty"}, Toledo8217Scale),
        (
            "modbus-scale",
            {"address": "tcp://127.0.0.1:9", "profile": "generic-int32-cdab"},
            ModbusScale,
        ),
        ("mqtt-scale", {"host": "127.0.0.1", "port": 9}, MqttScale),
    ],
)
def test_scales_are_opened_by_name(driver: str, options: dict[str, object], made: type) -> None:
    scale = open_scale(driver, "scale-1", options)
    try:
        assert isinstance(scale, made)
    finally:
        scale.close()


def test_the_zpl_printer_is_opened_by_name(tmp_path: Path) -> None:
    printer = open_printer(
        "zpl", "printer-1", {"host": "127.0.0.1", "port": 9, "journal_path": str(tmp_path / "j")}
    )
    try:
        assert isinstance(printer, ZplPrinter)
        assert printer.config.journal_path == tmp_path / "j"
    finally:
        printer.close()


def test_the_tspl_printer_is_opened_by_name(tmp_path: Path) -> None:
    printer = open_printer(
        "tspl",
        "printer-1",
        {"host": "127.0.0.1", "port": 9, "gap_mm": 3, "journal_path": str(tmp_path / "j")},
    )
    try:
        assert isinstance(printer, TsplPrinter)
        assert printer.config.gap_mm == 3
    finally:
        printer.close()


def test_a_driver_of_another_class_is_refused_and_closed(tmp_path: Path) -> None:
    with pytest.raises(DeviceConfigError, match=r"not a Scale .* is it a scale driver"):
        open_scale("serial-line", "dock-1", {"port": str(tmp_path / "none")})
    with pytest.raises(DeviceConfigError, match="not a LabelPrinter"):
        open_printer("mt-sics", "scale-1", {"address": "tcp://127.0.0.1:9"})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"address": "tcp://127.0.0.1:9", "division": 0.005},
            "division must be a decimal written as a string",
        ),
        ({"address": "tcp://127.0.0.1:9", "baudrate": "9600"}, "baudrate must be a whole number"),
        ({"address": "tcp://127.0.0.1:9", "query_tare": "yes"}, "query_tare must be true or false"),
        ({"address": "tcp://127.0.0.1:9", "parity": "X"}, "parity must be one of 'N', 'E', 'O'"),
        ({"address": "tcp://127.0.0.1:9", "reply_timout": 1}, "unknown option.*reply_timout"),
        ({}, "the mt-sics driver needs address"),
    ],
)
def test_every_driver_option_is_checked_with_one_voice(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(DeviceConfigError, match=message):
        open_scale("mt-sics", "scale-1", options)


def test_a_decimal_option_written_as_a_string_is_exact() -> None:
    scale = open_scale("mt-sics", "scale-1", {"address": "tcp://127.0.0.1:9", "division": "0.005"})
    try:
        assert isinstance(scale, MtSicsScale)
        assert scale.config.division == Decimal("0.005")
    finally:
        scale.close()


def test_every_device_reports_its_health_the_same_way(tmp_path: Path) -> None:
    """One ``status()`` giving one type, without touching the device (nothing listens)."""
    devices: list[Device] = [
        open_scanner("serial-line", "scanner-1", {"port": str(tmp_path / "none")}),
        open_scale("mt-sics", "scale-1", {"address": "tcp://127.0.0.1:9"}),
        open_printer("zpl", "printer-1", {"host": "127.0.0.1", "port": 9}),
    ]
    try:
        for device in devices:
            assert isinstance(device, Device)
            status = device.status()
            assert isinstance(status, DeviceStatus)
            assert status.state == "disconnected"
    finally:
        for device in devices:
            device.close()
