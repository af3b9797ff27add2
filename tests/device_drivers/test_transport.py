"""The one byte transport: the loopback pair, TCP and a pty, and a driver over the loopback."""

from __future__ import annotations

import os
import socket
import threading
import time
import tty
from collections.abc import Iterator
from decimal import Decimal

import pytest

from device_drivers.errors import DeviceUnavailableError
from device_drivers.port_errors import port_error_text
from device_drivers.scales import MtSicsScale, MtSicsScaleConfig
from device_drivers.scanners import SerialLineScanner, SerialScannerConfig
from device_drivers.transport import (
    ByteTransport,
    LoopbackTransport,
    SerialTransport,
    TcpTransport,
    TransportError,
    loopback_pair,
    read_reply,
)


def test_every_transport_is_a_byte_transport() -> None:
    host, device = loopback_pair()
    for transport in (host, device, SerialTransport("/dev/null"), TcpTransport("h", 1)):
        assert isinstance(transport, ByteTransport)


def test_loopback_moves_bytes_both_ways_and_waits_no_longer_than_asked() -> None:
    host, device = loopback_pair()
    host.open()
    host.write(b"~HS")
    assert device.read(1.0) == b"~HS"
    device.write(b"ok\r\n")
    assert host.read(1.0) == b"ok\r\n"
    started = time.monotonic()
    assert host.read(0.05) == b""
    assert time.monotonic() - started < 5.0


def test_loopback_discards_old_input_and_what_came_before_open() -> None:
    host, device = loopback_pair()
    device.write(b"sent while nobody listened")
    host.open()
    assert host.read(0.0) == b""
    device.write(b"late answer")
    host.discard_input()
    assert host.read(0.0) == b""


def test_a_closed_or_unplugged_loopback_fails_as_a_port_does() -> None:
    host, _device = loopback_pair("scale-port")
    with pytest.raises(TransportError, match="not open"):
        host.read(0.0)
    host.open()
    host.unplug()
    with pytest.raises(TransportError) as lost:
        host.write(b"x")
    assert port_error_text(lost.value) == "unplugged"
    with pytest.raises(TransportError):
        host.open()
    host.plug()
    host.open()
    host.write(b"x")
    assert host.opens == 2


def test_interrupt_wakes_a_blocked_read() -> None:
    host, _device = loopback_pair()
    host.open()
    woke: list[bytes] = []
    reader = threading.Thread(target=lambda: woke.append(host.read(30.0)))
    reader.start()
    time.sleep(0.05)
    host.interrupt()
    reader.join(10.0)
    assert woke == [b""]


def test_read_reply_collects_a_reply_that_arrives_in_pieces() -> None:
    host, device = loopback_pair()
    host.open()

    def answer() -> None:
        for piece in (b"\x02ab", b"c\x03", b"rest"):
            device.write(piece)
            time.sleep(0.01)

    threading.Thread(target=answer).start()
    reply, received = read_reply(host, lambda b: b.index(b"\x03") + 1 if b"\x03" in b else None, 5)
    assert reply == b"\x02abc\x03"
    assert received.startswith(reply)
    assert read_reply(host, lambda b: None, 0.01)[0] is None


def test_transport_errors_are_what_scales_and_printers_each_catch() -> None:
    error = TransportError("gone")
    assert isinstance(error, OSError)
    assert isinstance(error, DeviceUnavailableError)


def test_tcp_refused_is_said_in_the_engineers_words() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = TcpTransport("127.0.0.1", port, connect_timeout=2.0)
    with pytest.raises(TransportError) as refused:
        transport.open()
    assert port_error_text(refused.value).startswith("connection refused")
    assert f"127.0.0.1:{port}" in str(refused.value)


def test_tcp_moves_bytes_and_sees_the_peer_go() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        transport = TcpTransport("127.0.0.1", server.getsockname()[1])
        transport.open()
        peer, _ = server.accept()
        try:
            transport.write(b"SI\r\n")
            assert peer.recv(16) == b"SI\r\n"
            peer.sendall(b"S S 1.000 kg\r\n")
            assert transport.read(5.0) == b"S S 1.000 kg\r\n"
        finally:
            peer.close()
        with pytest.raises(TransportError, match="closed the connection") as closed:
            transport.read(5.0)
        assert port_error_text(closed.value) == "the other end closed the connection"
        transport.close()
        with pytest.raises(TransportError, match="not connected"):
            transport.write(b"x")


@pytest.fixture
def pty_pair(no_leaks: None) -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def test_serial_open_hands_stale_input_to_the_hook(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    os.write(master, b"4006381333931\r")
    seen: list[tuple[bytes, bool]] = []
    transport = SerialTransport(path, on_stale_input=lambda data, cut: seen.append((data, cut)))
    transport.open()
    try:
        assert seen == [(b"4006381333931\r", False)]
        assert transport.read(0.05) == b""
    finally:
        transport.close()


def test_serial_missing_port_names_the_cause_once() -> None:
    transport = SerialTransport("/dev/serial/by-id/no-such-device")
    with pytest.raises(TransportError) as missing:
        transport.open()
    assert str(missing.value).count("no-such-device") == 1
    assert port_error_text(missing.value).startswith("no such port")


def scanner_on(transport: LoopbackTransport) -> SerialLineScanner:
    config = SerialScannerConfig(
        "scanner-1", port="loopback", reconnect_min_delay=0.01, reconnect_max_delay=0.05
    )
    return SerialLineScanner(config, transport=transport)


def test_scanner_reads_scans_over_the_loopback_and_comes_back_after_unplug() -> None:
    host, device = loopback_pair("scanner-port")
    with scanner_on(host) as scanner:
        assert scanner.read_scan(0) is None
        assert scanner.status().state == "connected"
        device.write(b"4006381333931\r")
        scan = scanner.read_scan(5.0)
        assert scan is not None
        assert scan.data == "4006381333931"
        host.unplug()
        assert scanner.read_scan(0.05) is None
        status = scanner.status()
        assert status.state == "disconnected"
        assert status.last_error is not None
        assert status.last_error.endswith("scanner-port: unplugged")
        host.plug()
        give_up_at = time.monotonic() + 10.0
        while scanner.status().state != "connected" and time.monotonic() < give_up_at:
            scanner.read_scan(0.05)
        assert scanner.status().state == "connected"
        device.write(b"4006381333931\r")
        assert scanner.read_scan(5.0) is not None


def test_a_scale_driver_weighs_over_the_loopback() -> None:
    """The scale drivers take the same transport: a scripted MT-SICS device on the far end."""
    host, device = loopback_pair("scale-port")
    stop = threading.Event()

    def answer() -> None:
        pending = b""
        while not stop.is_set():
            try:
                pending += device.read(0.05)
            except TransportError:
                return
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                if line == b"SI":
                    device.write(b"S S      1.234 kg\r\n")

    responder = threading.Thread(target=answer)
    responder.start()
    config = MtSicsScaleConfig("scale-1", "loopback", reply_timeout=5.0, query_tare=False)
    try:
        with MtSicsScale(config, transport=host) as scale:
            reading = scale.read_now()
            assert (reading.net, reading.unit, reading.stable) == (Decimal("1.234"), "kg", True)
            assert scale.status().state == "connected"
    finally:
        stop.set()
        responder.join(10.0)
