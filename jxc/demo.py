"""``jxc demo``: a whole site on one machine, end to end, in a few seconds.

It starts the real processes a site runs (central on SQLite, a simulated serial scanner
on a pseudo-terminal, an edge agent reading it), scans a scripted delivery, and waits until
central's stock shows every carton. Nothing is faked: the demo talks to the processes only
through their command lines and HTTP, exactly as a user would.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

SITE_ID = "DEMO-01"
SCANNER_ID = "dock-scanner-1"
GS = "<GS>"

# A delivery at the dock: GS1-128 pallet/carton labels (]C1: (02) GTIN of the contents with
# (37) their count, (01) a case GTIN), a retail EAN-13 (]E0), and one burst of line noise
# that the driver must count and drop, never book.
SCANS: list[tuple[str, Decimal]] = [
    (f"]C10209506000134352172612311042B{GS}3712", Decimal(12)),
    (f"]C10209506000134352172612311042B{GS}3712", Decimal(12)),
    (f"]C10209506000134352172703151043A{GS}3706", Decimal(6)),
    ("]C1010950110153000310L-7781", Decimal(6)),
    ("]E05901234123457", Decimal(1)),
    ("!garbage", Decimal(0)),
    ("]E05901234123457", Decimal(1)),
]

# Master data created at central before the delivery; the edge pulls it through the change
# feed and maps each scanned code to an item (a GTIN-14 case of sugar counts 6 bags).
ITEMS: list[dict[str, Any]] = [
    {
        "item_code": "TEA-GREEN-250",
        "name": "Green tea 250 g",
        "uom": "BOX",
        "barcodes": [{"barcode": "09506000134352", "qty_per": "1"}],
    },
    {
        "item_code": "SUGAR-1KG",
        "name": "Sugar 1 kg",
        "uom": "BAG",
        "barcodes": [{"barcode": "09501101530003", "qty_per": "6"}],
    },
    {
        "item_code": "MUG-WHITE",
        "name": "White mug",
        "uom": "EA",
        "barcodes": [{"barcode": "5901234123457", "qty_per": "1"}],
    },
]

SITE_FILE = """\
# Written by `jxc demo`. A real site's file looks the same: see deploy/sites/.
[site]
id = "{site_id}"
name = "Demo dock"

[central]
url = "{central_url}"
site_secret_file = "{site_id}.secret"

[sync]
push_interval_s = 0.5
pull_interval_s = 0.5

[ledger]
path = "edge-{site_id}.db"

[status]
port = {edge_port}

[receiving]
location = "DOCK-1"
uom = "EA"

[[devices.scanners]]
id = "{scanner_id}"
driver = "serial-line"
port = "dev/{scanner_id}"
terminator = "CR"
"""


def free_port(preferred: int) -> int:
    """The preferred port when it is free (stable URLs for people), else any free one."""
    for candidate in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free TCP port on 127.0.0.1")


def get_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URL
        return json.load(response)


def wait_for(url: str, *, deadline_s: float, proc: subprocess.Popen[Any]) -> Any:
    """Poll ``url`` until it answers 200 or the deadline passes (bounded, never forever)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError, ValueError):
            return get_json(url)
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {deadline_s} s")


@dataclass
class DemoProcesses:
    """The processes the demo started, so they can all be stopped together."""

    procs: list[subprocess.Popen[Any]]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def started() -> Iterator[DemoProcesses]:
    group = DemoProcesses([])
    try:
        yield group
    finally:
        group.stop()


def _spawn(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "jxc", *args], stderr=sink, **kwargs)


def run_demo(*, once: bool, workdir: str) -> int:
    console = Console()
    root = Path(workdir).resolve()
    shutil.rmtree(root, ignore_errors=True)
    (root / "dev").mkdir(parents=True)
    logs = root / "logs"
    central_port = free_port(8700)
    edge_port = free_port(8701)
    central_url = f"http://127.0.0.1:{central_port}"
    edge_url = f"http://127.0.0.1:{edge_port}/healthz"

    with started() as group:
        console.print(f"[bold]jxc demo[/] in {root}")
        central = _spawn(
            [
                "central",
                "serve",
                "--port",
                str(central_port),
                "--database-url",
                f"sqlite:///{root / 'central.db'}",
            ],
            logs / "central.log",
            stdout=subprocess.DEVNULL,
        )
        group.procs.append(central)
        wait_for(f"{central_url}/healthz", deadline_s=60, proc=central)
        console.print(f"  central     up at {central_url}")
        for item in ITEMS:
            code, body = item["item_code"], {k: v for k, v in item.items() if k != "item_code"}
            put_json(f"{central_url}/api/v1/items/{code}", body)
        console.print(f"  master data {len(ITEMS)} items with their barcodes created at central")

        link = root / "dev" / SCANNER_ID
        scanner = _spawn(
            ["sim", "scanner", "--link", str(link), "--terminator", "CR"],
            logs / "scanner.log",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        group.procs.append(scanner)
        assert scanner.stdout is not None
        device = scanner.stdout.readline().strip().removeprefix("device:").strip()
        console.print(f"  scanner     twin on {device} -> {link}")

        # As an operator would: register the site at central, hand its secret to the edge.
        secret_file = root / f"{SITE_ID}.secret"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "jxc",
                "central",
                "site",
                "add",
                SITE_ID,
                "--database-url",
                f"sqlite:///{root / 'central.db'}",
                "--secret-file",
                str(secret_file),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        console.print(f"  site        {SITE_ID} registered at central, secret in {secret_file}")

        site_file = root / "site.toml"
        site_file.write_text(
            SITE_FILE.format(
                site_id=SITE_ID,
                central_url=central_url,
                edge_port=edge_port,
                scanner_id=SCANNER_ID,
            )
        )
        edge = _spawn(
            ["edge", "run", "--config", str(site_file)],
            logs / "edge.log",
            stdout=subprocess.DEVNULL,
        )
        group.procs.append(edge)
        wait_for(edge_url, deadline_s=60, proc=edge)
        console.print(f"  edge agent  up, status at {edge_url}")
        if not _wait_for_master_data(edge_url, len(ITEMS)):
            console.print(f"[red]the edge did not receive the master data[/]; see {logs}")
            return 1
        console.print("  edge agent  pulled the items and barcodes from central's change feed")

        _scan_all(scanner.stdin, console)
        expected = sum((qty for _, qty in SCANS), Decimal(0))
        stock = _wait_for_stock(central_url, expected, proc=central)
        if stock is None:
            console.print(f"[red]central did not reach {expected} units in time[/]; see {logs}")
            return 1
        edge_status = get_json(edge_url)
        _show(console, stock, edge_status)
        errors = edge_status["scanners"][0]["errors"]
        if edge_status["ledger"]["pending"] != 0 or sum(errors.values()) != 1:
            console.print(f"[red]unexpected edge state[/]: {json.dumps(edge_status)}")
            return 1
        console.print(
            "\n[bold]Where to look[/]\n"
            f"  API docs       {central_url}/docs\n"
            f"  stock          {central_url}/api/v1/stock?site_id={SITE_ID}\n"
            f"  central health {central_url}/healthz\n"
            f"  edge status    {edge_url}\n"
            f"  site file      {site_file}\n"
            f"  logs           {logs}/ (JSON lines)"
        )
        if once:
            return 0
        _keep_scanning(console, scanner, group)
        return 0


def _keep_scanning(console: Console, scanner: subprocess.Popen[Any], group: DemoProcesses) -> None:
    """Until Ctrl-C, every line typed here is scanned by the twin (as `jxc sim scanner` does)."""
    console.print(
        "\nRunning. Type a barcode and Enter to scan it (<GS> for the GS1 separator, "
        "!garbage for line noise); watch the stock URL. Ctrl-C stops everything."
    )
    with contextlib.suppress(KeyboardInterrupt):
        if sys.stdin.isatty():
            for line in sys.stdin:
                if scanner.stdin is None or any(p.poll() is not None for p in group.procs):
                    break
                scanner.stdin.write(line)
                scanner.stdin.flush()
        while all(p.poll() is None for p in group.procs):
            time.sleep(0.5)


def put_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(  # noqa: S310 - our own URL
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        return json.load(response)


def _wait_for_master_data(edge_url: str, items: int) -> bool:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if get_json(edge_url)["master_data"]["cached"]["items"] >= items:
                return True
        time.sleep(0.1)
    return False


def _scan_all(stdin: IO[str] | None, console: Console) -> None:
    assert stdin is not None
    for code, _ in SCANS:
        stdin.write(code + "\n")
        stdin.flush()
        console.print(f"  scanned     {code.replace(GS, '<GS>')}")
        time.sleep(0.05)


def _wait_for_stock(
    central_url: str, expected: Decimal, *, proc: subprocess.Popen[Any]
) -> list[dict[str, Any]] | None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            return None
        with contextlib.suppress(OSError, ValueError):
            stock: list[dict[str, Any]] = get_json(f"{central_url}/api/v1/stock?site_id={SITE_ID}")
            if sum(Decimal(row["qty"]) for row in stock) == expected:
                return stock
        time.sleep(0.2)
    return None


def _show(console: Console, stock: list[dict[str, Any]], edge_status: dict[str, Any]) -> None:
    table = Table(title=f"Stock at central for site {SITE_ID}")
    for column in ("location", "item", "lot", "qty", "uom"):
        table.add_column(column, justify="right" if column == "qty" else "left")
    for row in stock:
        table.add_row(row["location"], row["item"], row["lot"] or "", row["qty"], row["uom"])
    console.print(table)
    ledger = edge_status["ledger"]
    errors = {k: v for k, v in edge_status["scanners"][0]["errors"].items() if v}
    console.print(
        f"  edge ledger: {ledger['last_seq']} events, {ledger['pending']} pending, "
        f"synced through seq {ledger['synced_through']}; scanner errors counted: {errors}"
    )
