"""Fixtures for driver tests: a scanner twin on a real pty and drivers pointed at it."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from device_drivers.scanners import SerialLineScanner, SerialScannerConfig
from simulators.scanner import ScannerTwin


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves file descriptors or threads behind."""
    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    yield
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, f"leaked file descriptors: {sorted(leaked)}"
    assert threading.active_count() <= threads_before


@pytest.fixture
def scanner_link(tmp_path: Path) -> Path:
    return tmp_path / "scanner-dock1"


@pytest.fixture
def twin(scanner_link: Path, no_leaks: None) -> Iterator[ScannerTwin]:
    twins = ScannerTwin(link=scanner_link)
    yield twins
    twins.close()


@pytest.fixture
def make_scanner(scanner_link: Path, no_leaks: None) -> Iterator[Callable[..., SerialLineScanner]]:
    """Build drivers for the twin's link; every driver built is closed at teardown."""
    made: list[SerialLineScanner] = []

    def make(**overrides: Any) -> SerialLineScanner:
        settings: dict[str, Any] = {"device_id": "dock-1-scanner", "port": scanner_link}
        settings.update(overrides)
        scanner = SerialLineScanner(SerialScannerConfig(**settings))
        made.append(scanner)
        return scanner

    yield make
    for scanner in made:
        scanner.close()
