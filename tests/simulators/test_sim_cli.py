"""``jxc sim <twin>`` as real processes, talked to over the real transport.

Each test starts the command as a user would, reads its ``device:`` line, and speaks the
device's protocol to it with a few raw bytes written here (or with the real driver, which
is the end-to-end check that a driver and a twin written from the same notes agree). Fault
commands go in through stdin, and SIGTERM must end the process with status 0.
"""

from __future__ import annotations

import json
import queue
import socket
import struct
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient

from device_drivers.printers import LabelJob, sample_label
from device_drivers.printers.base import PrintJob
from device_drivers.registry import open_printer, open_scale
from tests.mqtt_broker import Broker, broker_fixture, mqtt_broker_fixture, subscriber_fixture
from tests.patience import patience_timeout
from tests.simulators.sim_process import PtyPort, SimProcess, recv_until

__all__ = ["broker_fixture", "mqtt_broker_fixture", "subscriber_fixture"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)

STX, ETX = b"\x02", b"\x03"
LABEL = b"^XA^FO20,20^A0N,30,30^FDjxc twin^FS^XZ"


def eventually(check: Callable[[], Any], *, within: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy (bounded; fails with ``what``)."""
    within = patience_timeout(within)
    give_up_at = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > give_up_at:
            pytest.fail(f"not within {within} s: {what}")
        time.sleep(0.05)


def tcp_address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def ask_status(address: tuple[str, int]) -> list[bytes]:
    """``~HS`` on a fresh connection: the three status strings, STX/ETX stripped."""
    with socket.create_connection(address, timeout=patience_timeout(5)) as sock:
        sock.sendall(b"~HS")
        reply = recv_until(sock, b"\r\n", count=3)
    lines = reply.split(b"\r\n")[:3]
    assert all(line.startswith(STX) and line.endswith(ETX) for line in lines), reply
    return [line[1:-1] for line in lines]


# -- every twin, one runner ------------------------------------------------------------------

TWINS = [
    # (jxc sim arguments, a line of its 'help', a line it must refuse)
    (["scanner"], "!drop-gs [on|off]", "!no-such-command"),
    (["scale", "--tcp", "0"], "weight VALUE [UNIT] [SETTLE]", "no-such-command"),
    (["toledo-scale"], "tare VALUE", "no-such-command"),
    (["modbus-scale"], "swap-words [on|off] [@UNIT]", "no-such-command"),
    (["mqtt-scanner"], "!truncated TEXT", "!no-such-command"),
    (["mqtt-scale"], "lie [on|off]", "no-such-command"),
    (["printer", "--port", "0"], "paper-out | paper-in", "no-such-command"),
]


@pytest.mark.parametrize(
    ("args", "help_line", "refused"), TWINS, ids=[args[0] for args, _, _ in TWINS]
)
def test_every_twin_runs_through_one_runner(
    request: pytest.FixtureRequest, args: list[str], help_line: str, refused: str
) -> None:
    """Announced alike, 'help' lists the twin's own commands, a wrong line is refused on
    stderr and the twin carries on, SIGTERM ends it with status 0: one runner for all."""
    if args[0].startswith("mqtt-"):
        broker: Broker = request.getfixturevalue("broker")
        args = [*args, "--port", str(broker.port)]
    with SimProcess(*args) as sim:
        assert sim.line().startswith("device: "), args
        sim.send("help")
        assert sim.line_starting(help_line)
        sim.send(refused)
        sim.wait_stderr(f"not understood: {refused!r}")
        sim.send("help")  # still there after the refusal
        assert sim.line_starting(help_line)
        assert sim.terminate() == 0
        assert "Traceback" not in sim.stderr


# -- serial scanner ------------------------------------------------------------------------


def test_scanner_console_commands_are_commands_and_only_reads_go_on_the_wire(
    tmp_path: Path,
) -> None:
    link = tmp_path / "dev" / "scanner-1"
    link.parent.mkdir()
    with SimProcess("scanner", "--link", str(link), "--symbology", "]C1") as sim:
        assert sim.line().startswith("device: /dev/pts/")
        assert sim.line() == f"link: {link}"
        with PtyPort(link) as port:
            sim.send("help")
            assert sim.line_starting("TEXT ")
            sim.send("!drop-gs on")  # a misconfigured scanner: no GS between fields
            sim.send("0109506000134352<GS>10LOT42<GS>3712")
            sim.send("!drop-gs off")
            sim.send("!frobnicate")  # a mistyped command is refused, not scanned
            sim.wait_stderr("not understood: '!frobnicate'")
            sim.send("!send help")  # a barcode that reads 'help', sent on purpose
            sim.send("0109506000134352<GS>10LOT42<GS>3712")
            last = b"]C10109506000134352\x1d10LOT42\x1d3712\r"
            wire = port.read_until(b"]C1help\r" + last, timeout=patience_timeout(10))
        assert wire == b"]C1010950600013435210LOT423712\r" + b"]C1help\r" + last
        assert sim.terminate() == 0
    assert not link.is_symlink()


# -- printer -------------------------------------------------------------------------------


def test_printer_on_tcp_answers_host_status_prints_and_takes_faults() -> None:
    with SimProcess("printer", "--port", "0") as sim:
        device = sim.line()
        assert device.startswith("device: tcp://127.0.0.1:"), device
        address = tcp_address(device.removeprefix("device: "))

        first, second, third = ask_status(address)
        assert first.split(b",")[1:3] == [b"0", b"0"]  # paper out, paused: no
        assert second.split(b",")[2] == b"0"  # head closed
        assert third == b"1234,0"

        with socket.create_connection(address, timeout=patience_timeout(5)) as sock:
            sock.sendall(LABEL)

        def printed() -> bool:
            sim.send("labels")
            return sim.line_starting("").startswith("1 printed")

        eventually(printed, what="the label counted as printed")
        assert "texts=['jxc twin']" in sim.line_starting("   1 job=")
        sim.send("last")
        assert sim.line_starting("^XA") == LABEL.decode()

        sim.send("paper-out")
        sim.line_starting("paper-out")
        assert ask_status(address)[0].split(b",")[1] == b"1"
        sim.send("pause")
        sim.line_starting("paper-out, paused")
        assert ask_status(address)[0].split(b",")[2] == b"1"
        sim.send("head-open")
        sim.line_starting("paper-out, head-open, paused")
        assert ask_status(address)[1].split(b",")[2] == b"1"

        sim.send("no-hs-reply")
        sim.line_starting("paper-out")
        with socket.create_connection(address, timeout=patience_timeout(5)) as sock:
            sock.sendall(b"~HS")
            assert recv_until(sock, b"\r\n", timeout=0.5) == b""

        sim.send("help")
        assert sim.line_starting("no-hs-reply")
        sim.send("bogus command")
        sim.wait_stderr("not understood: 'bogus command'")
        assert sim.terminate() == 0
        assert "Traceback" not in sim.stderr


def test_printer_on_a_pty_link_works_with_the_real_driver(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "printer-1"
    link.parent.mkdir()
    with SimProcess("printer", "--link", str(link)) as sim:
        device = sim.line()
        assert device.startswith("device: /dev/pts/"), device
        assert sim.line() == f"link: {link}"
        assert sim.line().startswith("tcp: tcp://127.0.0.1:")

        with PtyPort(link) as port:  # the raw protocol first: ~HS over the "serial line"
            port.write(b"~HS")
            reply = port.read_until(b"1234,0\x03\r\n")
            assert reply.count(b"\r\n") == 3, reply

        printer = open_printer("zpl", "printer-1", {"serial_port": str(link)})
        try:
            assert printer.printer_status().ready
            result = printer.print_label(PrintJob("job-1", LABEL))
            assert result.outcome in ("printed", "delivered"), result
        finally:
            printer.close()

        def printed() -> bool:
            sim.send("labels")
            return sim.line_starting("").startswith("1 printed")

        eventually(printed, what="the driver's label printed")
        assert sim.terminate() == 0
    assert not link.is_symlink()


def test_tspl_printer_answers_its_status_byte_and_prints_for_the_real_driver(
    tmp_path: Path,
) -> None:
    link = tmp_path / "dev" / "tspl-1"
    link.parent.mkdir()
    with SimProcess("printer", "--language", "tspl", "--link", str(link)) as sim:
        assert sim.line().startswith("device: /dev/pts/")
        assert sim.line() == f"link: {link}"
        tcp = sim.line().removeprefix("tcp: ")
        with socket.create_connection(tcp_address(tcp), timeout=5) as sock:
            sock.sendall(b"\x1b!?")
            assert sock.recv(1) == b"\x00"  # ready
            sim.send("paper-out")
            assert sim.line_starting("paper-out")
            sock.sendall(b"\x1b!?")
            assert sock.recv(1) == b"\x04"  # paper out
            sim.send("paper-in")
            sim.send("cover-open")
            assert sim.line_starting("cover-open")
            sock.sendall(b"\x1b!?")
            assert sock.recv(1) == b"\x40"
            sim.send("cover-close")
            assert sim.line_starting("ready")
        printer = open_printer("tspl", "tspl-1", {"serial_port": str(link)})
        try:
            eventually(lambda: printer.printer_status().ready, what="the twin ready again")
            result = printer.print_label(LabelJob("job-1", sample_label("S1 tspl-1", "now", "x")))
            assert result.outcome in ("printed", "delivered"), result
        finally:
            printer.close()

        def printed() -> bool:
            sim.send("labels")
            return sim.line_starting("").startswith("1 printed")

        eventually(printed, what="the driver's label printed")
        assert sim.terminate() == 0


# -- Toledo 8217 ---------------------------------------------------------------------------


def test_toledo_scale_answers_w_and_takes_a_new_weight(tmp_path: Path) -> None:
    link = tmp_path / "toledo"
    with SimProcess(
        "toledo-scale", "--link", str(link), "--weight", "1.250", "--decimals", "3"
    ) as sim:
        assert sim.line().startswith("device: /dev/pts/")
        assert sim.line() == f"link: {link}"
        with PtyPort(link) as port:
            port.write(b"W")
            assert port.read_until(b"\r") == b"\x0201.250\r"
            sim.send("weight 2.5")

            def shows_new_weight() -> bool:
                port.write(b"W")
                return port.read_until(b"\r") == b"\x0202.500\r"

            eventually(shows_new_weight, what="the new weight on the wire")
            sim.send("overload")

            def overloaded() -> bool:
                port.write(b"W")
                return port.read_until(b"\r") == b"\x02?B\r"  # over capacity (bit 1), bit 6 set

            eventually(overloaded, what="the overload status frame")

        sim.send("status")
        assert sim.line_starting("net:").startswith("net: 2.500 kg")
        assert sim.terminate() == 0
    assert not link.is_symlink()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["toledo-scale", "--weight", "abc"], "--weight"),
        (["toledo-scale", "--capacity", "NaN"], "--capacity"),
        (["toledo-scale", "--decimals", "9"], "--decimals"),
        (["mqtt-scale", "--weight", "1,5"], "--weight"),
        (["modbus-scale", "--profile", "no-such-profile"], "generic-int32-cdab"),
        (["modbus-scale", "--profile", "missing.toml"], "no such profile file"),
        (["modbus-scale", "--unit-id", "300"], "--unit-id"),
        (["printer", "--port", "70000"], "--port"),
    ],
)
def test_bad_options_are_usage_errors_not_tracebacks(args: list[str], fragment: str) -> None:
    with SimProcess(*args) as sim:
        assert sim.wait(timeout=patience_timeout(60)) == 2
        assert fragment in sim.stderr
        assert "Traceback" not in sim.stderr


def test_a_twin_that_cannot_start_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with SimProcess("printer", "--port", str(port)) as sim:
            assert sim.wait(timeout=patience_timeout(60)) == 1
    assert "did not start" in sim.stderr
    assert "Traceback" not in sim.stderr
    with SimProcess("toledo-scale", "--link", str(tmp_path / "no" / "such" / "dir" / "x")) as sim:
        assert sim.wait(timeout=patience_timeout(60)) == 1
    assert "did not start" in sim.stderr
    assert "Traceback" not in sim.stderr


# -- Modbus --------------------------------------------------------------------------------


def cdab(value: int) -> list[int]:
    """An int32 as the generic-int32-cdab profile sends it: low word first."""
    high, low = struct.unpack(">HH", struct.pack(">i", value))
    return [low, high]


def test_modbus_scale_on_tcp_serves_registers_and_the_real_driver(tmp_path: Path) -> None:
    with SimProcess("modbus-scale", "--tcp-port", "0", "--weight", "12.345") as sim:
        device = sim.line()
        assert device.startswith("device: tcp://127.0.0.1:"), device
        host, port = tcp_address(device.removeprefix("device: "))
        client = ModbusTcpClient(host, port=port, timeout=patience_timeout(2), retries=1)
        assert client.connect()
        try:
            reply = client.read_holding_registers(0, count=2, device_id=1)
            assert reply.registers == cdab(12345)
            sim.send("weight 1.500")

            def reads_new_weight() -> bool:
                answer = client.read_holding_registers(0, count=2, device_id=1)
                return bool(answer.registers == cdab(1500))

            eventually(reads_new_weight, what="the new weight in the registers")
        finally:
            client.close()

        scale = open_scale(
            "modbus-scale",
            "scale-1",
            {"address": f"tcp://{host}:{port}", "profile": "generic-int32-cdab"},
        )
        try:
            reading = scale.read_stable(timeout=patience_timeout(5))
            assert (reading.net, reading.unit) == (Decimal("1.500"), "kg")
        finally:
            scale.close()
        sim.send("status")
        assert "unit 1: net 1.500 kg" in sim.line_starting("unit 1:")
        assert sim.terminate() == 0


def test_modbus_scale_on_rtu_serves_two_unit_ids(tmp_path: Path) -> None:
    link = tmp_path / "rs485"
    with SimProcess(
        "modbus-scale", "--link", str(link), "--unit-id", "1", "--unit-id", "2", "--weight", "1"
    ) as sim:
        assert sim.line().startswith("device: /dev/pts/")
        assert sim.line() == f"link: {link}"
        sim.send("weight 2.250 @2")
        sim.send("status")
        assert "unit 2: net 2.250 kg" in sim.line_starting("unit 1:")
        client = ModbusSerialClient(
            str(link), baudrate=19200, timeout=patience_timeout(1), retries=2
        )
        assert client.connect()
        try:
            assert client.read_holding_registers(0, count=2, device_id=1).registers == cdab(1000)
            assert client.read_holding_registers(0, count=2, device_id=2).registers == cdab(2250)
        finally:
            client.close()
        sim.send("weight 1 @9")
        sim.wait_stderr("serves unit id(s) 1, 2")
        assert sim.terminate() == 0
    assert not link.is_symlink()


# -- MQTT ----------------------------------------------------------------------------------


def test_mqtt_scanner_publishes_each_stdin_line(
    broker: Broker, subscriber: Callable[[str], queue.Queue[bytes]]
) -> None:
    topic = "jxc/scanners/sc-1/scan"
    reads = subscriber(topic)
    with SimProcess(
        "mqtt-scanner", "--port", str(broker.port), "--device-id", "sc-1", "--symbology", "]C1"
    ) as sim:
        assert sim.line() == f"device: mqtt://127.0.0.1:{broker.port}/{topic}"
        sim.send("0109506000134352<GS>10LOT42")
        payload = json.loads(reads.get(timeout=patience_timeout(10)))
        assert payload == {"data": "0109506000134352\x1d10LOT42", "symbology": "]C1"}
        sim.send("!garbage")
        assert reads.get(timeout=patience_timeout(10)).startswith(b"\xf0")
        sim.send("!send help")
        assert json.loads(reads.get(timeout=patience_timeout(10)))["data"] == "help"
        sim.send("help")
        assert sim.line_starting("!garbage")
        assert sim.terminate() == 0


def test_mqtt_scale_publishes_weights_and_takes_commands(
    broker: Broker, subscriber: Callable[[str], queue.Queue[bytes]]
) -> None:
    readings = subscriber("jxc/scales/sc-2/weight")
    with SimProcess(
        "mqtt-scale", "--port", str(broker.port), "--device-id", "sc-2", "--weight", "1.250"
    ) as sim:
        assert sim.line() == f"device: mqtt://127.0.0.1:{broker.port}/jxc/scales/sc-2/weight"
        first = json.loads(readings.get(timeout=patience_timeout(10)))
        assert (first["net"], first["unit"], first["stable"]) == ("1.250", "kg", True)
        sim.send("weight 2.000")

        def new_weight() -> bool:
            return bool(
                json.loads(readings.get(timeout=patience_timeout(10))).get("net") == "2.000"
            )

        eventually(new_weight, what="the new weight published")
        sim.send("overload")
        eventually(
            lambda: (
                json.loads(readings.get(timeout=patience_timeout(10))).get("status") == "overload"
            ),
            what="overload published",
        )
        sim.send("weight lots")
        sim.wait_stderr("not understood: 'weight lots'")
        assert sim.terminate() == 0
