"""The Modbus scale twin on its own, seen through plain pymodbus clients."""

from __future__ import annotations

import ast
import os
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from simulators import modbus_scale
from simulators.modbus_scale import ModbusScaleTwin, read_twin_profile
from tests.patience import patience_timeout

pytestmark = pytest.mark.timeout(60)

PROFILES = Path(__file__).resolve().parents[2] / "device_drivers" / "scales" / "profiles"
CDAB = PROFILES / "generic-int32-cdab.toml"
FLOAT = PROFILES / "generic-float32-abcd.toml"


class Client(Protocol):
    """pymodbus's sync clients, typed for what these tests call."""

    def connect(self) -> bool: ...

    def close(self) -> None: ...

    def read_holding_registers(self, address: int, *, count: int, device_id: int) -> ModbusPDU: ...

    def read_input_registers(self, address: int, *, count: int, device_id: int) -> ModbusPDU: ...

    def write_register(self, address: int, value: int, *, device_id: int) -> ModbusPDU: ...


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = threading.active_count()
    yield
    leaked = set(os.listdir("/proc/self/fd")) - fds_before
    assert not leaked, f"leaked file descriptors: {sorted(leaked)}"
    assert threading.active_count() <= threads_before


@pytest.fixture
def tcp_twin() -> Iterator[tuple[ModbusScaleTwin, Client]]:
    twin = ModbusScaleTwin(CDAB, tcp_port=0, weight=Decimal("12.345"))
    assert twin.tcp_address is not None
    host, port = twin.tcp_address
    client: Client = ModbusTcpClient(host, port=port, timeout=patience_timeout(0.5), retries=0)
    assert client.connect()
    yield twin, client
    client.close()
    twin.close()


def int32_cdab(registers: Sequence[int]) -> int:
    value: int = struct.unpack(">i", struct.pack(">HH", registers[1], registers[0]))[0]
    return value


def test_the_twin_imports_nothing_from_the_drivers() -> None:
    tree = ast.parse(Path(modbus_scale.__file__).read_text())
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name.startswith("device_drivers")]


def test_registers_follow_the_profile(tcp_twin: tuple[ModbusScaleTwin, Client]) -> None:
    twin, client = tcp_twin
    reply = client.read_holding_registers(0, count=5, device_id=1)
    assert not reply.isError()
    assert int32_cdab(reply.registers[0:2]) == 12345  # 12.345 kg, low word first
    assert int32_cdab(reply.registers[2:4]) == 0  # no tare
    assert reply.registers[4] & 0b1  # stable
    twin.overload()
    assert client.read_holding_registers(4, count=1, device_id=1).registers[0] & 0b10
    twin.clear_faults()
    twin.wobble(5.0)
    status = client.read_holding_registers(4, count=1, device_id=1).registers[0]
    assert not status & 0b1


def test_commands_tare_and_refuse(tcp_twin: tuple[ModbusScaleTwin, Client]) -> None:
    twin, client = tcp_twin
    assert not client.write_register(5, 2, device_id=1).isError()  # tare
    assert twin.tare_weight() == Decimal("12.345")
    assert twin.net() == Decimal("0.000")
    refused = client.write_register(5, 1, device_id=1)  # zero with 12 kg on it
    assert isinstance(refused, ExceptionResponse)
    assert refused.exception_code == 3
    assert not client.write_register(5, 3, device_id=1).isError()  # clear tare
    assert twin.tare_weight() == Decimal("0.000")
    assert isinstance(client.write_register(0, 1, device_id=1), ExceptionResponse)


def test_swapped_words_and_wire_faults(tcp_twin: tuple[ModbusScaleTwin, Client]) -> None:
    twin, client = tcp_twin
    twin.swap_words()
    registers = client.read_holding_registers(0, count=2, device_id=1).registers
    assert registers == [0, 12345]  # high word first, against the profile's CDAB
    twin.swap_words(False)
    twin.swap_bytes()
    registers = client.read_holding_registers(0, count=2, device_id=1).registers
    assert registers == [0x3930, 0]  # 12345 is 0x3039: each register's bytes swapped
    twin.clear_faults()
    twin.no_reply()
    with pytest.raises(ModbusException):
        client.read_holding_registers(0, count=2, device_id=1)
    twin.wire_fault("short")
    client.close()
    assert client.connect()
    assert len(client.read_holding_registers(0, count=2, device_id=1).registers) == 1


def test_slow_replies_arrive_late(tcp_twin: tuple[ModbusScaleTwin, Client]) -> None:
    twin, client = tcp_twin
    twin.set_delay(0.2)
    started = time.monotonic()
    assert not client.read_holding_registers(0, count=2, device_id=1).isError()
    assert time.monotonic() - started >= 0.15


def test_disconnect_and_come_back_on_the_same_port(
    tcp_twin: tuple[ModbusScaleTwin, Client],
) -> None:
    twin, client = tcp_twin
    port = twin.tcp_address
    twin.disconnect()
    assert not twin.connected
    with pytest.raises(ModbusException):
        client.read_holding_registers(0, count=2, device_id=1)
    twin.reconnect()
    assert twin.tcp_address == port
    client.close()
    assert client.connect()
    assert int32_cdab(client.read_holding_registers(0, count=2, device_id=1).registers) == 12345


def test_float_profile_over_rtu_on_a_pty(tmp_path: Path) -> None:
    link = tmp_path / "usb-rs485"
    with ModbusScaleTwin(FLOAT, rtu=True, link=link, units=(3, 4), weight=Decimal("12.5")) as twin:
        twin.set_weight(Decimal("99.5"), unit=4)
        client: Client = ModbusSerialClient(
            str(link), framer=FramerType.RTU, timeout=patience_timeout(0.5), retries=0
        )
        try:
            assert client.connect()
            for unit, expected in ((3, 12.5), (4, 99.5)):
                registers = client.read_input_registers(0, count=3, device_id=unit).registers
                value = struct.unpack(">f", struct.pack(">HH", *registers[:2]))[0]
                assert value == expected
                assert not registers[2] & 0b1  # motion bit clear
            twin.wire_fault("bad_crc")
            with pytest.raises(ModbusException):
                client.read_input_registers(0, count=3, device_id=3)
            twin.disconnect()
            assert not link.exists()
            twin.reconnect()
            assert link.exists()
        finally:
            client.close()


def test_the_profile_reader_is_its_own(tmp_path: Path) -> None:
    profile = read_twin_profile(CDAB)
    assert (profile.weight.address, profile.weight.word_order, profile.command_address) == (
        0,
        "little",
        5,
    )
