"""``jxc sim site``: a whole site's devices from the edge agent's own site file.

The process is started as a user would; every endpoint it prints is then spoken to over
its real transport (raw protocol bytes written here, or the real driver opened from the
same options the site file gives the agent), and SIGTERM must close every twin, exit 0 and
remove the pty links it made.
"""

from __future__ import annotations

import json
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from device_drivers.registry import open_scale, open_scanner
from tests.mqtt_broker import Broker, broker_fixture, mqtt_broker_fixture, subscriber_fixture
from tests.patience import patience_timeout
from tests.simulators.sim_process import PtyPort, SimProcess, free_port, recv_until

__all__ = ["broker_fixture", "mqtt_broker_fixture", "subscriber_fixture"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]


def eventually(check: Callable[[], Any], *, within: float = 10.0, what: str = "") -> Any:
    within = patience_timeout(within)
    give_up_at = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > give_up_at:
            pytest.fail(f"not within {within} s: {what}")
        time.sleep(0.05)


def cdab(value: int) -> list[int]:
    high, low = struct.unpack(">HH", struct.pack(">i", value))
    return [low, high]


def endpoints(sim: SimProcess, count: int) -> dict[str, str]:
    """The first ``count`` lines, ``DEVICE-ID: ENDPOINT``, as a mapping."""
    found: dict[str, str] = {}
    for _ in range(count):
        device_id, _, endpoint = sim.line().partition(": ")
        found[device_id] = endpoint
    return found


SITE_HEAD = """
[site]
id = "S01"
[central]
url = "http://127.0.0.1:9"
[ledger]
path = "edge.db"
"""


def write_site(folder: Path, devices: str) -> Path:
    path = folder / "site.toml"
    path.write_text(SITE_HEAD + devices, encoding="utf-8")
    return path


def test_a_site_of_four_devices_answers_everywhere_and_cleans_up(tmp_path: Path) -> None:
    printer_port, modbus_port = free_port(), free_port()
    site = write_site(
        tmp_path,
        f"""
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "dev/scanner-1"
terminator = "CR"

[[devices.scales]]
id = "scale-1"
driver = "mt-sics"
address = "dev/scale-1"

[[devices.scales]]
id = "scale-2"
driver = "modbus-scale"
address = "tcp://127.0.0.1:{modbus_port}"
profile = "generic-int32-cdab"
unit_id = 1

[[devices.printers]]
id = "printer-1"
driver = "zpl"
host = "127.0.0.1"
port = {printer_port}
""",
    )
    scanner_link, scale_link = tmp_path / "dev" / "scanner-1", tmp_path / "dev" / "scale-1"
    with SimProcess("site", "--config", str(site)) as sim:
        assert endpoints(sim, 4) == {
            "scanner-1": str(scanner_link),
            "scale-1": str(scale_link),
            "scale-2": f"tcp://127.0.0.1:{modbus_port}",
            "printer-1": f"tcp://127.0.0.1:{printer_port}",
        }

        # The scanner, through the real serial-line driver, options as in the site file.
        scanner = open_scanner("serial-line", "scanner-1", {"port": str(scanner_link)})
        try:
            assert scanner.read_scan(timeout=0.3) is None  # opens the port (opening flushes it)
            sim.send("scanner-1 help")  # commands, never reads
            assert sim.line_starting("!drop-gs [on|off]")
            sim.send("scanner-1 !drop-gs on")
            sim.send("scanner-1 !drop-gs off")
            sim.send("scanner-1 0109506000134352<GS>10LOT42")
            scan = scanner.read_scan(timeout=patience_timeout(10))
            assert scan is not None
            assert scan.data == "0109506000134352\x1d10LOT42"
        finally:
            scanner.close()

        # The MT-SICS scale, raw: S is answered with a stable weight.
        with PtyPort(scale_link) as port:
            port.write(b"S\r\n")
            assert port.read_until(b"\r\n") == b"S S       0.00 g\r\n"
            sim.send("scale-1 weight 12.5")

            def shows_load() -> bool:
                port.write(b"S\r\n")
                return port.read_until(b"\r\n") == b"S S      12.50 g\r\n"

            eventually(shows_load, what="the load typed for scale-1")

        # The Modbus scale, with a plain pymodbus client.
        sim.send("scale-2 weight 3.000")
        client = ModbusTcpClient(
            "127.0.0.1", port=modbus_port, timeout=patience_timeout(2), retries=1
        )
        assert client.connect()
        try:

            def reads_load() -> bool:
                reply = client.read_holding_registers(0, count=2, device_id=1)
                return bool(reply.registers == cdab(3000))

            eventually(reads_load, what="the load typed for scale-2")
        finally:
            client.close()

        # The printer, raw: ~HS is answered with three STX ... ETX CR LF strings.
        with socket.create_connection(
            ("127.0.0.1", printer_port), timeout=patience_timeout(5)
        ) as sock:
            sock.sendall(b"~HS")
            reply = recv_until(sock, b"\r\n", count=3)
        assert reply.count(b"\x02") == 3
        assert reply.count(b"\x03\r\n") == 3

        sim.send("printer-1 paper-out")
        assert sim.line_starting("paper-out")
        sim.send("devices")
        assert sim.line_starting("scanner-1:").endswith("(serial-line)")
        sim.send("nobody help")
        sim.wait_stderr("no device 'nobody'")
        assert sim.terminate() == 0
        assert "Traceback" not in sim.stderr
    assert not scanner_link.is_symlink()
    assert not scale_link.is_symlink()


def test_a_site_file_picks_tspl_and_the_twin_speaks_it(tmp_path: Path) -> None:
    printer_port = free_port()
    site = write_site(
        tmp_path,
        f"""
[[devices.printers]]
id = "printer-1"
driver = "tspl"
host = "127.0.0.1"
port = {printer_port}

[[devices.printers]]
id = "printer-2"
driver = "tspl"
serial_port = "dev/printer-2"
""",
    )
    with SimProcess("site", "--config", str(site)) as sim:
        assert endpoints(sim, 2) == {
            "printer-1": f"tcp://127.0.0.1:{printer_port}",
            "printer-2": str(tmp_path / "dev" / "printer-2"),
        }
        with socket.create_connection(("127.0.0.1", printer_port), timeout=5) as sock:
            sock.sendall(b"\x1b!?")
            assert sock.recv(1) == b"\x00"
            sim.send("printer-1 head-open")
            assert sim.line_starting("head-open")
            sock.sendall(b"\x1b!?")
            assert sock.recv(1) == b"\x01"
        with PtyPort(tmp_path / "dev" / "printer-2") as port:
            port.write(b"\x1b!?")
            assert port.read_until(b"\x00") == b"\x00"
        assert sim.terminate() == 0
        assert "Traceback" not in sim.stderr


def test_devices_on_one_modbus_address_share_one_bus(tmp_path: Path) -> None:
    modbus_port = free_port()
    site = write_site(
        tmp_path,
        f"""
[[devices.scales]]
id = "bay-a"
driver = "modbus-scale"
address = "tcp://127.0.0.1:{modbus_port}"
profile = "generic-int32-cdab"
unit_id = 1

[[devices.scales]]
id = "bay-b"
driver = "modbus-scale"
address = "tcp://127.0.0.1:{modbus_port}"
profile = "generic-int32-cdab"
unit_id = 2

[[devices.scales]]
id = "toledo"
driver = "toledo-8217"
address = "dev/toledo"
""",
    )
    with SimProcess("site", "--config", str(site)) as sim:
        found = endpoints(sim, 3)
        assert found["bay-a"] == found["bay-b"] == f"tcp://127.0.0.1:{modbus_port}"
        sim.send("bay-b weight 2.000")
        sim.send("bay-a weight 1.000")
        options = {"address": found["bay-b"], "profile": "generic-int32-cdab", "unit_id": 2}

        def weighs(expected: Decimal) -> bool:
            scale = open_scale("modbus-scale", "bay-b", options)
            try:
                return scale.read_stable(timeout=patience_timeout(5)).net == expected
            finally:
                scale.close()

        eventually(lambda: weighs(Decimal("2.000")), what="bay-b on unit 2")
        client = ModbusTcpClient(
            "127.0.0.1", port=modbus_port, timeout=patience_timeout(2), retries=1
        )
        assert client.connect()
        try:
            assert client.read_holding_registers(0, count=2, device_id=1).registers == cdab(1000)
        finally:
            client.close()
        with PtyPort(found["toledo"]) as port:
            port.write(b"W")
            assert port.read_until(b"\r") == b"\x0200.000\r"
        assert sim.terminate() == 0
    assert not (tmp_path / "dev" / "toledo").is_symlink()


def test_an_unknown_driver_is_an_error_naming_the_known_ones(tmp_path: Path) -> None:
    site = write_site(
        tmp_path,
        """
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "dev/scanner-1"

[[devices.scanners]]
id = "acme-1"
driver = "acme-scanner"
""",
    )
    with SimProcess("site", "--config", str(site)) as sim:
        assert sim.wait(timeout=patience_timeout(60)) == 1
    assert "acme-1: no twin for driver 'acme-scanner'" in sim.stderr
    assert "serial-line, mqtt-scanner" in sim.stderr
    assert "Traceback" not in sim.stderr
    assert not (tmp_path / "dev").exists()  # checked before anything started

    with SimProcess("site", "--config", str(site), "--skip-unknown") as sim:
        assert sim.line() == f"scanner-1: {tmp_path / 'dev' / 'scanner-1'}"
        sim.wait_stderr("warning: acme-1: no twin for driver 'acme-scanner'")
        assert sim.terminate() == 0


@pytest.mark.parametrize(
    ("devices", "fragment"),
    [
        ('[[devices.scanners]]\nid = "p"\ndriver = "zpl"\nhost = "127.0.0.1"', "zpl is a driver"),
        ('[[devices.printers]]\nid = "p"\ndriver = "zpl"\nhost = "10.0.0.9"', "127.0.0.1 only"),
        ('[[devices.printers]]\nid = "p"\ndriver = "zpl"', "exactly one of host or serial_port"),
        ('[[devices.scales]]\nid = "s"\ndriver = "mt-sics"', "needs address"),
        (
            '[[devices.scales]]\nid = "s"\ndriver = "modbus-scale"\naddress = "tcp://127.0.0.1:1"'
            '\nprofile = "nope"',
            "no built-in Modbus scale profile 'nope'",
        ),
        (
            '[[devices.scales]]\nid = "a"\ndriver = "mt-sics"\naddress = "dev/x"\n'
            '[[devices.scales]]\nid = "b"\ndriver = "toledo-8217"\naddress = "dev/x"',
            "already taken by a",
        ),
        ("[[devices.lights]]\nid = 'l'\ndriver = 'x'", "unknown device class"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_a_wrong_site_file_is_a_clear_error(tmp_path: Path, devices: str, fragment: str) -> None:
    site = write_site(tmp_path, devices)
    with SimProcess("site", "--config", str(site)) as sim:
        assert sim.wait(timeout=patience_timeout(60)) == 1
    assert fragment in sim.stderr
    assert "Traceback" not in sim.stderr


def test_a_twin_that_fails_closes_those_already_started(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        site = write_site(
            tmp_path,
            f"""
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "dev/scanner-1"

[[devices.printers]]
id = "printer-1"
driver = "zpl"
host = "127.0.0.1"
port = {taken.getsockname()[1]}
""",
        )
        with SimProcess("site", "--config", str(site)) as sim:
            assert sim.wait(timeout=patience_timeout(60)) == 1
    assert "printer-1: twin did not start" in sim.stderr
    assert "Traceback" not in sim.stderr
    assert (tmp_path / "dev").is_dir()  # the scanner had started ...
    assert not (tmp_path / "dev" / "scanner-1").is_symlink()  # ... and was closed again


def test_the_shipped_example_site_runs(tmp_path: Path) -> None:
    folder = tmp_path / "deploy" / "sites"
    folder.mkdir(parents=True)
    shutil.copy(REPO / "deploy" / "sites" / "example-site.toml", folder)
    link = tmp_path / "var" / "dev" / "scanner-1"
    with SimProcess("site", "--config", str(folder / "example-site.toml")) as sim:
        device_id, _, endpoint = sim.line().partition(": ")
        assert device_id == "dock-scanner-1"
        assert Path(endpoint).resolve() == link.resolve()
        assert link.is_symlink()
        assert sim.proc.stdin is not None
        sim.proc.stdin.close()  # end of input: the twins stay up until the signal
        with PtyPort(link):
            assert sim.proc.poll() is None
        sim.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert sim.wait() == 0
    assert not link.is_symlink()


def test_the_site_runner_loads_no_driver_code() -> None:
    """Builtin profiles are found as data files; no module of device_drivers is imported."""
    probe = (
        "import sys, pathlib\n"
        "from simulators.site import plan_site\n"
        "config = {'devices': {'scales': [{'id': 's', 'driver': 'modbus-scale',"
        " 'address': 'tcp://127.0.0.1:1', 'profile': 'generic-int32-cdab'}]}}\n"
        "plans, _ = plan_site(config, pathlib.Path('.'))\n"
        "assert plans[0].profile.name == 'generic-int32-cdab.toml', plans\n"
        "print(sorted(m for m in sys.modules if m.startswith('device_drivers')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=patience_timeout(60),
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- MQTT devices of a site ----------------------------------------------------------------


def test_mqtt_devices_publish_on_the_site_files_topics(
    tmp_path: Path, broker: Broker, subscriber: Callable[[str], queue.Queue[bytes]]
) -> None:
    reads = subscriber("dock-a/scanner/mq-scan/scan")
    weights = subscriber("dock-a/scale/mq-scale/weight")
    site = write_site(
        tmp_path,
        f"""
[[devices.scanners]]
id = "mq-scan"
driver = "mqtt-scanner"
port = {broker.port}
topic = "dock-a/scanner/{{device_id}}/scan"

[[devices.scales]]
id = "mq-scale"
driver = "mqtt-scale"
host = "127.0.0.1"
port = {broker.port}
topic = "dock-a/scale/{{device_id}}/weight"
""",
    )
    with SimProcess("site", "--config", str(site)) as sim:
        assert endpoints(sim, 2) == {
            "mq-scan": f"mqtt://127.0.0.1:{broker.port}/dock-a/scanner/mq-scan/scan",
            "mq-scale": f"mqtt://127.0.0.1:{broker.port}/dock-a/scale/mq-scale/weight",
        }
        sim.send("mq-scan ABC 123")  # the rest of the line is the read, spaces and all
        assert json.loads(reads.get(timeout=patience_timeout(10))) == {"data": "ABC 123"}
        sim.send("mq-scale weight 4.200")
        eventually(
            lambda: json.loads(weights.get(timeout=patience_timeout(10))).get("net") == "4.200",
            what="the typed weight published on the site's topic",
        )
        assert sim.terminate() == 0
