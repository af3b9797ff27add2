"""The scanner twin's "drops GS separators" fault, byte for byte on its pty."""

from __future__ import annotations

import os
import select
import time

from simulators.scanner import GS, ScannerTwin


def read_until(fd: int, expected_size: int, within: float = 3.0) -> bytes:
    received = b""
    give_up_at = time.monotonic() + within
    while len(received) < expected_size:
        remaining = give_up_at - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            received += os.read(fd, 4096)
    return received


def test_dropping_gs_strips_every_separator_from_reads_until_turned_off() -> None:
    read = f"0109506000134352{GS}10LOT42{GS}21SN1"
    with ScannerTwin() as twin:
        port = os.open(twin.device_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            assert not twin.drops_gs
            twin.drop_gs_separators()
            twin.send(read, symbology="]C1")
            twin.send_raw(b"A\x1dB\r")  # raw bytes are raw: the fault is the scanner's setup
            twin.drop_gs_separators(False)
            twin.send(read, symbology="]C1")
            expected = (
                b"]C1010950600013435210LOT4221SN1\r"
                + b"A\x1dB\r"
                + b"]C10109506000134352\x1d10LOT42\x1d21SN1\r"
            )
            assert read_until(port, len(expected)) == expected
        finally:
            os.close(port)
