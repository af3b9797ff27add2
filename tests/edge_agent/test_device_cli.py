"""``jxc device ...`` against real twins: what a technician sees while commissioning a dock."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_agent.device_cli import app
from simulators.printer import ZplPrinterTwin
from simulators.scale import MtSicsScaleTwin
from simulators.scanner import ScannerTwin
from simulators.toledo8217 import Toledo8217Twin
from tests.dock import DockTwins
from tests.patience import patience_timeout


@dataclass
class Dock:
    site_file: Path
    twins: DockTwins

    @property
    def scanner(self) -> ScannerTwin:
        assert self.twins.scanner is not None
        return self.twins.scanner

    @property
    def scale(self) -> MtSicsScaleTwin:
        return self.twins.scale

    @property
    def printer(self) -> ZplPrinterTwin:
        return self.twins.printer


@pytest.fixture
def dock(tmp_path: Path) -> Iterator[Dock]:
    twins = DockTwins.start(tmp_path, weight=Decimal("25.04"))
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        '[site]\nid = "S01"\n[ledger]\npath = "edge.db"\n' + twins.devices_toml(journal=True)
    )
    try:
        yield Dock(site_file, twins)
    finally:
        twins.close()


def run(*args: str) -> tuple[int, list[dict[str, object]], str]:
    result = CliRunner().invoke(app, list(args))
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, rows, result.stderr


def error_line(err: str) -> str:
    """The one line the command ends with (the drivers' log lines are around it)."""
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    return line


def add_devices(dock: Dock, sections: str) -> None:
    dock.site_file.write_text(dock.site_file.read_text() + sections)


def test_list_shows_every_device_connected(dock: Dock) -> None:
    code, rows, _ = run("list", "-c", str(dock.site_file), "--json")
    assert code == 0
    assert [(r["id"], r["class"], r["driver"], r["state"]) for r in rows] == [
        ("scanner-1", "scanner", "serial-line", "connected"),
        ("scale-1", "scale", "mt-sics", "connected"),
        ("printer-1", "printer", "zpl", "connected"),
    ]


def test_list_says_why_a_device_is_misconfigured(dock: Dock) -> None:
    add_devices(
        dock,
        """
[[devices.scales]]
id = "bay-1"
driver = "modbus-scale"
address = "tcp://127.0.0.1:9"
profile = "no-such-profile"
[[devices.scales]]
id = "bay-2"
driver = "modbus-scale"
address = "tcp://127.0.0.1:9"
profile = "profiles/bay-2.toml"
""",
    )
    missing = dock.site_file.parent / "profiles" / "bay-2.toml"
    code, rows, err = run("list", "-c", str(dock.site_file), "--json", "--wait", "0.5")
    assert code == 1
    by_id = {row["id"]: row for row in rows}
    assert by_id["bay-1"]["state"] == by_id["bay-2"]["state"] == "misconfigured"
    builtin = str(by_id["bay-1"]["last_error"])
    assert builtin.startswith("config: no built-in Modbus scale profile 'no-such-profile'")
    assert "looked for no-such-profile.toml in " in builtin
    assert "generic-int32-cdab" in builtin
    assert by_id["bay-2"]["last_error"] == (
        f"config: cannot read Modbus scale profile {missing}: No such file or directory"
    )
    assert "error:" not in err  # said in the rows, where it belongs

    result = CliRunner().invoke(app, ["list", "-c", str(dock.site_file), "--wait", "0.5"])
    [table_row] = [line for line in result.stdout.splitlines() if line.startswith("id=bay-2")]
    assert table_row == (
        "id=bay-2  class=scale  driver=modbus-scale  state=misconfigured  "
        f"last_error=config: cannot read Modbus scale profile {missing}: "
        "No such file or directory"
    )

    # One device named alone: the same reason, the device named once.
    code, _, err = run("weigh", "-c", str(dock.site_file), "--scale", "bay-1")
    assert code == 1
    assert error_line(err).startswith(
        "error: bay-1: no built-in Modbus scale profile 'no-such-profile'"
    )


def test_list_fails_when_a_device_is_away(dock: Dock) -> None:
    dock.scale.close()
    code, rows, _ = run("list", "-c", str(dock.site_file), "--json", "--wait", "0.5")
    assert code == 1
    states = {r["id"]: r["state"] for r in rows}
    assert states == {"scanner-1": "connected", "scale-1": "disconnected", "printer-1": "connected"}


def test_weigh_reads_a_stable_weight(dock: Dock) -> None:
    dock.scale.set_weight(Decimal("12.34"), "kg", settle=0.3)
    code, [row], _ = run("weigh", "-c", str(dock.site_file), "--json")
    assert code == 0
    assert (row["net"], row["unit"], row["stable"]) == ("12.34", "kg", True)


def test_weigh_says_why_there_is_no_weight(dock: Dock) -> None:
    dock.scale.overload()
    code, rows, err = run("weigh", "-c", str(dock.site_file), "--timeout", "1")
    assert code == 1
    assert rows == []
    assert error_line(err) == "error: scale-1: overload: weight: above the permitted range"


def test_a_silent_scale_is_said_as_silence_in_the_time_the_engineer_gave(dock: Dock) -> None:
    dock.scale.no_reply(None)  # the scale is off, the cable out: nothing comes back
    code, _, err = run("weigh", "-c", str(dock.site_file), "--timeout", "1.5")
    assert code == 1
    port = dock.site_file.parent / "dev" / "scale-1"
    assert error_line(err) == (
        f"error: scale-1: timeout: no answer from the scale on {port} within 1.5 s: "
        "check cable, port and power"
    )


def test_a_scale_answering_noise_says_how_many_replies_and_what_to_check(
    dock: Dock, caplog: pytest.LogCaptureFixture
) -> None:
    dock.scale.garble_replies(1000)  # the baud rate or parity is wrong: every reply is noise
    code, _, err = run("weigh", "-c", str(dock.site_file), "--timeout", "1.5")
    assert code == 1
    line = error_line(err)
    found = re.fullmatch(
        r"error: scale-1: timeout: the scale on (\S+) answered with (\d+) unreadable "
        r"repl(y|ies) within 1.5 s: check that its baud rate and parity match the site "
        r"file's 8N1 at 9600 baud \(7E1 vs 8N1 is the usual mix-up\)",
        line,
    )
    assert found is not None, line
    assert found[1] == str(dock.site_file.parent / "dev" / "scale-1")
    assert int(found[2]) >= 1
    # Each unreadable reply was counted and logged once: the number is the log's number.
    garbage = [r for r in caplog.records if getattr(r, "reason", None) == "garbage"]
    assert int(found[2]) == len(garbage)


@pytest.mark.timeout(200)
def test_a_port_that_refuses_7e1_fails_at_once_in_one_line(dock: Dock) -> None:
    site = dock.site_file.read_text().replace(
        'address = "dev/scale-1"', 'address = "dev/scale-1"\nbytesize = 7\nparity = "E"'
    )
    dock.site_file.write_text(site)
    started = time.monotonic()
    code, _, err = run("weigh", "-c", str(dock.site_file), "--timeout", "120")
    waited = time.monotonic() - started
    assert code == 1
    port = dock.site_file.parent / "dev" / "scale-1"
    line = error_line(err)
    assert line.startswith(
        f"error: scale-1: io: {port} refuses the serial settings 7E1 at 9600 baud: "
    ), line
    assert 'set bytesize = 8 and parity = "N"' in line
    assert line.count(str(port)) == 1
    # Not retried until the deadline: waiting never makes a pty take 7E1.
    assert waited < 60, waited


@pytest.mark.timeout(200)
def test_a_toledo_twin_at_the_protocols_own_7e1_is_told_to_use_8n1(tmp_path: Path) -> None:
    """The first thing a new user tries: ``jxc sim toledo-scale`` and a site file with the
    Toledo defaults. A pty takes the open and refuses the settings at the first read."""
    (tmp_path / "dev").mkdir()
    with Toledo8217Twin(tmp_path / "dev" / "toledo"):
        site_file = tmp_path / "site.toml"
        site_file.write_text(
            '[site]\nid = "S01"\n[ledger]\npath = "edge.db"\n'
            '[[devices.scales]]\nid = "tol-1"\ndriver = "toledo-8217"\naddress = "dev/toledo"\n'
        )
        started = time.monotonic()
        code, _, err = run("weigh", "-c", str(site_file), "--timeout", "120")
        waited = time.monotonic() - started
    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: tol-1: io: {tmp_path / 'dev' / 'toledo'} refuses the serial")
    assert "7E1 at 9600 baud" in line
    assert waited < 60, waited


class _WhenConnected(logging.Handler):
    """Set when a device driver logs that its link is up: a scanner's driver discards what
    waited on the port from before it opened, so a test scans only after that."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "device_connected":
            self.connected.set()


@pytest.fixture
def connected() -> Iterator[threading.Event]:
    handler = _WhenConnected()
    drivers = logging.getLogger("device_drivers")
    level = drivers.level
    drivers.setLevel(logging.INFO)
    drivers.addHandler(handler)
    try:
        yield handler.connected
    finally:
        drivers.removeHandler(handler)
        drivers.setLevel(level)


def test_listen_prints_parsed_scans_and_never_noise(dock: Dock, connected: threading.Event) -> None:
    def scan_later() -> None:
        assert connected.wait(patience_timeout(10))
        dock.scanner.send_garbage()
        dock.scanner.send("010950600013435210LOT-7\x1d17270131", symbology="]C1")
        dock.scanner.send("5901234123457", symbology="]E0")

    feeder = threading.Thread(target=scan_later)
    feeder.start()
    code, rows, _ = run(
        "listen",
        "-c",
        str(dock.site_file),
        "--count",
        "2",
        "--timeout",
        str(patience_timeout(10)),
        "--json",
    )
    feeder.join()
    assert code == 0
    first, second, summary = rows
    assert (first["gtin"], first["lot"], first["expiry"]) == (
        "09506000134352",
        "LOT-7",
        "2027-01-31",
    )
    assert second["data"] == "5901234123457"
    assert summary["scans"] == 2
    assert sum(summary["errors"].values()) == 1  # type: ignore[attr-defined]


def test_listen_shows_the_content_gtin_and_the_net_weight(
    dock: Dock, connected: threading.Event
) -> None:
    # A carton label: (02) the GTIN of the trade items inside, (37) how many,
    # (3103) the net weight in kg with three decimals.
    label = "0209506000134352" + "3712\x1d" + "3103001250"

    def scan_later() -> None:
        for _listener in range(2):  # the JSON listen, then the plain one
            assert connected.wait(patience_timeout(10))
            connected.clear()
            dock.scanner.send(label, symbology="]C1")

    feeder = threading.Thread(target=scan_later)
    feeder.start()
    wait = str(patience_timeout(10))
    code, [row, _], _ = run(
        "listen", "-c", str(dock.site_file), "--count", "1", "--timeout", wait, "--json"
    )
    assert code == 0
    assert (row["content_gtin"], row["count"], row["net_weight_kg"]) == (
        "09506000134352",
        12,
        "1.250",
    )
    assert row["gtin"] is None
    result = CliRunner().invoke(
        app, ["listen", "-c", str(dock.site_file), "--count", "1", "--timeout", wait]
    )
    feeder.join()
    assert result.exit_code == 0
    assert "content_gtin=09506000134352" in result.stdout
    assert "net_weight_kg=1.250" in result.stdout


def test_a_test_label_comes_out_once(dock: Dock) -> None:
    code, [row], _ = run("test-label", "-c", str(dock.site_file), "--json")
    assert code == 0
    assert row["outcome"] == "printed"
    assert dock.printer.job_ids() == [row["job_id"]]


def test_printer_status_names_what_is_wrong(dock: Dock) -> None:
    code, [ready], _ = run("printer-status", "-c", str(dock.site_file), "--json")
    assert code == 0
    assert ready["conditions"] == ["ready"]
    dock.printer.set_paper_out(True)
    code, [out], _ = run("printer-status", "-c", str(dock.site_file), "--json")
    assert code == 1
    assert "paper_out" in out["conditions"]  # type: ignore[operator]


def test_naming_a_device_the_site_does_not_have(dock: Dock) -> None:
    code, _, err = run("weigh", "-c", str(dock.site_file), "--scale", "scale-9")
    assert code == 1
    assert "no scale 'scale-9' in the site file (its scales: scale-1)" in err
