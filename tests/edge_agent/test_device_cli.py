"""``jxc device ...`` against real twins: what a technician sees while commissioning a dock."""

from __future__ import annotations

import json
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


@dataclass
class Dock:
    site_file: Path
    scanner: ScannerTwin
    scale: MtSicsScaleTwin
    printer: ZplPrinterTwin


@pytest.fixture
def dock(tmp_path: Path) -> Iterator[Dock]:
    (tmp_path / "dev").mkdir()
    scanner = ScannerTwin(link=tmp_path / "dev" / "scanner-1")
    scale = MtSicsScaleTwin(tmp_path / "dev" / "scale-1", weight=Decimal("25.04"), unit="kg")
    printer = ZplPrinterTwin()
    site_file = tmp_path / "site.toml"
    site_file.write_text(
        f"""
[site]
id = "S01"
[ledger]
path = "edge.db"
[[devices.scanners]]
id = "scanner-1"
driver = "serial-line"
port = "dev/scanner-1"
[[devices.scales]]
id = "scale-1"
driver = "mt-sics"
address = "dev/scale-1"
reply_timeout = 0.3
[[devices.printers]]
id = "printer-1"
driver = "zpl"
host = "127.0.0.1"
port = {printer.port}
reply_timeout = 0.3
job_timeout = 5.0
poll_interval = 0.03
settle_time = 0.1
journal_path = "printer-1.journal"
"""
    )
    yield Dock(site_file, scanner, scale, printer)
    scanner.close()
    scale.close()
    printer.close()


def run(*args: str) -> tuple[int, list[dict[str, object]], str]:
    result = CliRunner().invoke(app, list(args))
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, rows, result.stderr


def test_list_shows_every_device_connected(dock: Dock) -> None:
    code, rows, _ = run("list", "-c", str(dock.site_file), "--json")
    assert code == 0
    assert [(r["id"], r["class"], r["driver"], r["state"]) for r in rows] == [
        ("scanner-1", "scanner", "serial-line", "connected"),
        ("scale-1", "scale", "mt-sics", "connected"),
        ("printer-1", "printer", "zpl", "connected"),
    ]


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
    assert "scale-1" in err
    assert "overload" in err.lower()


def test_listen_prints_parsed_scans_and_never_noise(dock: Dock) -> None:
    def scan_later() -> None:
        time.sleep(0.5)
        dock.scanner.send_garbage()
        dock.scanner.send("010950600013435210LOT-7\x1d17270131", symbology="]C1")
        dock.scanner.send("5901234123457", symbology="]E0")

    feeder = threading.Thread(target=scan_later)
    feeder.start()
    code, rows, _ = run(
        "listen", "-c", str(dock.site_file), "--count", "2", "--timeout", "10", "--json"
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
