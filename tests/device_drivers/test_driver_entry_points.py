"""Drivers are picked by name, and a third party adds one through ``jxc.drivers``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_drivers.errors import DeviceConfigError
from device_drivers.registry import driver_names, open_scanner
from device_drivers.scanners import Scanner, SerialLineScanner
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
