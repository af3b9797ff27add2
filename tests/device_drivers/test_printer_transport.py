"""The serial transport on a real pty, and the driver speaking ~HS over it."""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Iterator

import pytest

from device_drivers.errors import DeviceUnavailableError
from device_drivers.printers import ZplPrinter, ZplPrinterConfig
from device_drivers.transport import SerialTransport

READY = (
    b"\x02030,0,1,1245,000,0,0,0,000,0,0,0\x03\r\n"
    b"\x02001,0,0,0,1,2,6,0,00000000,1,000\x03\r\n"
    b"\x021234,0\x03\r\n"
)


@pytest.fixture
def pty_pair(no_leaks: None) -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        yield master, path
    finally:
        os.close(master)
        os.close(slave)


def read_master(master: int, size: int) -> bytes:
    received = b""
    while len(received) < size and select.select([master], [], [], 2.0)[0]:
        received += os.read(master, 1024)
    return received


def test_bytes_go_both_ways(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    transport = SerialTransport(path, baudrate=115200)
    transport.open()
    try:
        transport.write(b"~HS")
        assert read_master(master, 3) == b"~HS"
        os.write(master, b"stale")
        assert transport.read(1.0) == b"stale"
        os.write(master, b"old")
        threading.Event().wait(0.05)
        transport.discard_input()
        assert transport.read(0.05) == b""
    finally:
        transport.close()
    with pytest.raises(DeviceUnavailableError):
        transport.write(b"x")


def test_missing_port_is_unavailable() -> None:
    transport = SerialTransport("/dev/serial/by-id/no-such-printer")
    with pytest.raises(DeviceUnavailableError):
        transport.open()


def test_driver_reads_status_over_serial(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    printer = ZplPrinter(ZplPrinterConfig("serial-printer", serial_port=path, reply_timeout=1.0))

    def answer() -> None:
        assert read_master(master, 3) == b"~HS"
        os.write(master, READY)

    responder = threading.Thread(target=answer)
    responder.start()
    try:
        status = printer.printer_status()
    finally:
        responder.join()
        printer.close()

    assert status.online
    assert status.conditions == ("paused",)
