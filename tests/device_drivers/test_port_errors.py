"""Why a port would not open, worded from the real errors of real ports (ptys here)."""

from __future__ import annotations

import os
import pty
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from device_drivers.port_errors import port_error_text, refuses_line_settings
from device_drivers.registry import open_scanner


@pytest.fixture
def pty_path() -> Iterator[str]:
    master, slave = pty.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def opening(path: str, **settings: object) -> BaseException:
    try:
        port = serial.Serial(path, timeout=0, exclusive=True, **settings)  # type: ignore[arg-type]
    except (serial.SerialException, OSError) as exc:
        return exc
    port.close()
    raise AssertionError(f"{path} opened")


def test_a_missing_port_is_said_once_with_the_next_step(tmp_path: Path) -> None:
    exc = opening(str(tmp_path / "ttyUSB9"))
    assert str(tmp_path) in str(exc)  # pyserial's own words carry the path (twice)
    assert port_error_text(exc) == (
        "no such port: is the adapter plugged in, and the address right?"
    )
    assert not refuses_line_settings(exc)


def test_a_port_held_by_another_program_says_so(pty_path: str) -> None:
    holder = serial.Serial(pty_path, timeout=0, exclusive=True)
    try:
        exc = opening(pty_path)
    finally:
        holder.close()
    assert port_error_text(exc).startswith("in use by another program")


def test_a_file_that_is_no_serial_port_says_so(tmp_path: Path) -> None:
    plain = tmp_path / "not-a-tty"
    plain.write_text("")
    assert port_error_text(opening(str(plain))).startswith("not a serial port")


def test_a_pty_refusing_seven_data_bits_is_told_apart(pty_path: str) -> None:
    """A pty takes the first 7E1 open and refuses the settings when next asked; either way
    the refusal is found in the chain, wrapped or not."""
    caught: BaseException | None = None
    try:
        port = serial.Serial(pty_path, bytesize=7, parity="E", timeout=0, exclusive=True)
        try:
            port.timeout = 0.1  # pyserial sets the line again
        finally:
            port.close()
    except Exception as exc:  # whatever pyserial lets through is what is tested
        caught = exc
    assert caught is not None
    wrapped = OSError(f"read from {pty_path} failed: {caught}")  # as a transport wraps it
    wrapped.__cause__ = caught
    assert refuses_line_settings(wrapped)
    assert refuses_line_settings(caught)


def test_the_scanner_driver_names_a_missing_port_once(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "scanner-1"
    scanner = open_scanner("serial-line", "scanner-1", {"port": str(path)})
    try:
        assert scanner.read_scan(timeout=0.1) is None
        last_error = scanner.status().last_error
    finally:
        scanner.close()
    assert last_error == (
        f"io: cannot open {path}: no such port: is the adapter plugged in, and the address right?"
    )
