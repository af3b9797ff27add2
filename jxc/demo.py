"""``jxc demo``: a whole receiving station on one machine, end to end, in a few seconds.

It starts the real processes a site runs: central on SQLite, the site's simulated devices
(``jxc sim site``: a serial scanner on a pseudo-terminal, an MT-SICS scale on another, a ZPL
label printer on a loopback TCP port) and an edge agent driving them. It then receives a
scripted delivery (cartons scanned, a sack of rice weighed, a label for every booking) and
waits until central's stock shows every carton and every label has come out. Nothing is
faked: the demo talks to the processes only through their command lines and HTTP, exactly
as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from jxc import paths
from jxc.demo_scenario import (
    DOCK,
    PEOPLE,
    QUARANTINE,
    STORE,
    Central,
    DemoStepError,
    Made,
    add_people,
    after_receiving,
    master_data,
    purchasing,
    sign_in,
    subscribe_webhook,
    where_to_look,
)

SITE_ID = "DEMO-01"
"""The dock's site: :data:`jxc.demo_scenario.WAREHOUSE`."""
DEMO_ADMIN = "demo-admin"
SCANNER_ID = "dock-scanner-1"
SCALE_ID = "dock-scale-1"
PRINTER_ID = "dock-printer-1"
GS = "<GS>"
RICE_CODE = "09506000134376"
RICE_WEIGHT = Decimal("4.25")
"""kg of rice on the scale (the twin is a 5.1 kg balance showing grams)."""


def _expiry(days: int) -> str:
    """A GS1 (17) date ``days`` from today: the lots are fresh whenever the demo runs, so
    receiving against the PO never quarantines them as expired."""
    return f"{datetime.now(UTC).date() + timedelta(days=days):%y%m%d}"


# A delivery at the dock: GS1-128 pallet/carton labels (]C1: (02) GTIN of the contents with
# (17) expiry (10) lot (37) their count, (01) a case GTIN), a retail EAN-13 (]E0), and one
# burst of line noise that the driver must count and drop, never book.
SCANS: list[tuple[str, Decimal]] = [
    (f"]C1020950600013435217{_expiry(400)}1042B{GS}3712", Decimal(12)),
    (f"]C1020950600013435217{_expiry(400)}1042B{GS}3712", Decimal(12)),
    (f"]C1020950600013435217{_expiry(500)}1043A{GS}3706", Decimal(6)),
    ("]C1010950110153000310L-7781", Decimal(6)),
    ("]E05901234123457", Decimal(1)),
    ("!garbage", Decimal(0)),
    ("]E05901234123457", Decimal(1)),
]
BOOKINGS = sum(1 for _, qty in SCANS if qty) + 1
"""Every good scan above, and the sack of rice weighed after them: one label each."""

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
    {
        "item_code": "RICE-BULK",
        "name": "Jasmine rice, bulk",
        "uom": "kg",
        "barcodes": [{"barcode": RICE_CODE, "qty_per": "1"}],
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
location = "{dock}"
uom = "EA"
purchase_orders = true      # every carton is booked against the site's open PO lines
quarantine = "{quarantine}"
scale = "{scale_id}"      # goods kept by weight are booked at its stable weight
printer = "{printer_id}"  # every booking gets a label

[[devices.scanners]]
id = "{scanner_id}"
driver = "serial-line"
port = "dev/{scanner_id}"
terminator = "CR"

[[devices.scales]]
id = "{scale_id}"
driver = "mt-sics"
address = "dev/{scale_id}"
reply_timeout = 0.5

[[devices.printers]]
id = "{printer_id}"
driver = "zpl"
host = "127.0.0.1"
port = {printer_port}
job_timeout = 5
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


def get_json(url: str, timeout: float = 2.0, token: str | None = None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - our own URL
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
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


class WebhookListener:
    """The receiver of the demo's webhook subscription: a loopback HTTP server in the demo's
    own process that takes every POST central sends (answering 204) and keeps each event's
    type, so the demo can show that central's deliveries arrive without a second program.

    It does not check signatures: it is the demo's stand-in for an ERP, and
    docs/integrations.md shows how a real receiver verifies them."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.arrived = threading.Event()
        heard = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                heard.events.append(self.headers.get("Jxc-Webhook-Event") or "?")
                heard.arrived.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the demo prints what arrived itself."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jxc-events"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="demo-webhooks", daemon=True
        )

    def __enter__(self) -> WebhookListener:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _spawn(args: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[Any]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "jxc", *args], stderr=sink, **kwargs)


def run_demo(*, once: bool, workdir: str) -> int:
    """Start everything, run the scenario, print where to look; 1 with the reason if a step
    did not get the answer it expects."""
    console = Console()
    root = Path(workdir).resolve()
    shutil.rmtree(root, ignore_errors=True)
    (root / "dev").mkdir(parents=True)
    logs = root / "logs"
    with WebhookListener() as listener, started() as group:
        try:
            devices = _run(console, root, group, listener)
        except DemoStepError as error:
            console.print(f"[red]demo step failed[/]: {error}; logs in {logs}")
            return 1
        if once:
            return 0
        _keep_scanning(console, devices, group)
        return 0


def _run(
    console: Console, root: Path, group: DemoProcesses, listener: WebhookListener
) -> subprocess.Popen[Any]:
    """The scenario: office work before the delivery, the delivery at the edge, the office
    work after it. The device twins' process is returned for typed scans."""
    logs = root / "logs"
    central_url = f"http://127.0.0.1:{free_port(8700)}"
    edge_port = free_port(8701)
    edge_url = f"http://127.0.0.1:{edge_port}/healthz"
    console.print(f"[bold]jxc demo[/] in {root}")
    central, token = _start_central(root, central_url, logs, console)
    group.procs.append(central)
    api = Central(central_url, {"admin": token})
    made = Made()
    master_data(api, ITEMS)
    console.print(
        f"  master data {len(ITEMS)} items with their barcodes and prices, sites"
        f" {SITE_ID} and {STORE} with locations, a supplier and reason codes"
    )
    add_people(api)
    console.print(
        "  people      " + ", ".join(f"{user} ({roles[0]})" for user, roles in PEOPLE.values())
    )
    subscribe_webhook(api, made, listener.url)
    console.print(f"  webhooks    every business event is sent to the demo's {listener.url}")
    po = purchasing(api, made)
    console.print(
        f"  purchasing  requisition {made.ids['requisition']} approved, PO {po['po_id']}"
        f" for {len(po['lines'])} lines approved: the edge receives against it"
    )
    site_file, devices = _start_site(console, root, central_url, edge_port, group)
    if not _wait_for_master_data(edge_url, len(ITEMS), len(po["lines"])):
        raise DemoStepError("the edge did not receive the master data and PO lines in 30 s")
    console.print(
        "  edge agent  pulled the items, barcodes and open PO lines from central's change feed"
    )

    _scan_all(devices.stdin, console)
    expected = sum((qty for _, qty in SCANS), RICE_WEIGHT)
    stock = _wait_for_stock(central_url, expected, proc=central, token=token)
    if stock is None:
        raise DemoStepError(f"central did not reach {expected} units in time")
    edge_status = _wait_for_labels(edge_url, BOOKINGS)
    _show(console, stock, edge_status)
    errors = edge_status["scanners"][0]["errors"]
    labels = edge_status["printers"][0]["labels"]
    printed = labels.get("printed", 0) + labels.get("delivered", 0)
    if edge_status["ledger"]["pending"] != 0 or sum(errors.values()) != 1 or printed != BOOKINGS:
        raise DemoStepError(f"unexpected edge state: {json.dumps(edge_status)}")
    after_receiving(api, made, po["po_id"])
    _show_made(console, made)
    # Central's webhook worker sends on its own schedule; the demo waits a bounded while
    # for the first delivery so `--once` can say whether any arrived.
    listener.arrived.wait(timeout=15)
    console.print(
        f"  webhooks    {len(listener.events)} event(s) received so far at {listener.url}"
        + (f", first {listener.events[0]}" if listener.events else "")
    )
    (root / "demo.json").write_text(json.dumps(made.ids, indent=2) + "\n")
    console.print(
        "\n[bold]Where to look[/]\n"
        f"  web console    {central_url}{paths.CONSOLE}/ (sign in with the login above)\n"
        f"  API docs       {central_url}/docs\n"
        f"  stock          {central_url}{paths.STOCK}?site_id={SITE_ID}\n"
        f"  central health {central_url}{paths.HEALTH}\n"
        f"  edge status    {edge_url}\n"
        f"  site file      {site_file}\n"
        f"  labels         {logs}/devices.out (`{PRINTER_ID} labels` lists them)\n"
        f"  logs           {logs}/ (JSON lines)\n"
        f"  made           {root / 'demo.json'} (the documents above, by module)"
    )
    console.print("\n[bold]Each module[/] (console pages; the API where the console has none)")
    for module, urls in where_to_look(f"{central_url}{paths.CONSOLE}", central_url):
        # soft_wrap: a URL is never broken across lines, so it can be copied as printed.
        console.print(f"  {module:<14} " + "\n                 ".join(urls), soft_wrap=True)
    return devices


def _start_site(
    console: Console, root: Path, central_url: str, edge_port: int, group: DemoProcesses
) -> tuple[Path, subprocess.Popen[str]]:
    """Register the site at central, start its device twins and its edge agent."""
    logs = root / "logs"
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
            scale_id=SCALE_ID,
            printer_id=PRINTER_ID,
            printer_port=free_port(9100),
            dock=DOCK,
            quarantine=QUARANTINE,
        )
    )
    devices = _spawn(
        ["sim", "site", "--config", str(site_file)],
        logs / "devices.log",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    group.procs.append(devices)
    for device_id, endpoint in _read_endpoints(devices, count=3):
        console.print(f"  device      {device_id} twin on {endpoint}")
    _drain(devices, logs / "devices.out")

    edge = _spawn(
        ["edge", "run", "--config", str(site_file)],
        logs / "edge.log",
        stdout=subprocess.DEVNULL,
    )
    group.procs.append(edge)
    wait_for(f"http://127.0.0.1:{edge_port}/healthz", deadline_s=60, proc=edge)
    console.print(f"  edge agent  up, status at http://127.0.0.1:{edge_port}/healthz")
    return site_file, devices


def _start_central(
    root: Path, central_url: str, logs: Path, console: Console
) -> tuple[subprocess.Popen[Any], str]:
    """Central on the demo's SQLite file, with a demo admin whose password is made now.

    Central has no default password; the demo makes one, has ``serve`` create the first
    admin with it, signs in, and prints the login so the ``/docs`` page can be tried.
    """
    admin_password = secrets.token_urlsafe(12)
    port = central_url.rsplit(":", 1)[1]
    central = _spawn(
        ["central", "serve", "--port", port, "--database-url", f"sqlite:///{root / 'central.db'}"],
        logs / "central.log",
        stdout=subprocess.DEVNULL,
        env={
            **os.environ,
            "JXC_CENTRAL_ADMIN_USER": DEMO_ADMIN,
            "JXC_CENTRAL_ADMIN_PASSWORD": admin_password,
            # The demo's webhook goes to its own listener on loopback, which central
            # refuses by default (docs/integrations.md); the demo's central allows it.
            "JXC_CENTRAL_WEBHOOK_ALLOW_PRIVATE": "true",
            "JXC_CENTRAL_WEBHOOK_POLL_S": "0.5",
        },
    )
    try:
        wait_for(f"{central_url}{paths.HEALTH}", deadline_s=60, proc=central)
    except BaseException:
        central.terminate()
        central.wait(timeout=10)
        raise
    console.print(f"  central     up at {central_url}")
    token = sign_in(central_url, DEMO_ADMIN, admin_password)
    console.print(
        f"  login       user {DEMO_ADMIN}, password {admin_password} (made for this demo)"
    )
    return central, token


def _read_endpoints(devices: subprocess.Popen[str], *, count: int) -> list[tuple[str, str]]:
    """The ``DEVICE-ID: ENDPOINT`` lines ``jxc sim site`` prints once its twins are up."""
    assert devices.stdout is not None
    found: list[tuple[str, str]] = []
    while len(found) < count:
        line = devices.stdout.readline()
        if not line:
            raise RuntimeError(f"jxc sim site exited with {devices.wait(timeout=10)}")
        device_id, _, endpoint = line.strip().partition(": ")
        found.append((device_id, endpoint))
    return found


def _drain(devices: subprocess.Popen[str], sink: Path) -> None:
    """Keep the twins' answers flowing into a file, so their pipe never fills up."""
    assert devices.stdout is not None
    stream = devices.stdout

    def copy() -> None:
        with sink.open("a", encoding="utf-8") as out:
            for line in stream:
                out.write(line)
                out.flush()

    threading.Thread(target=copy, name="demo-devices-out", daemon=True).start()


def _wait_for_labels(edge_url: str, count: int) -> dict[str, Any]:
    """The edge's status once ``count`` labels are settled (or after 30 s, as it is)."""
    end = time.monotonic() + 30
    status: dict[str, Any] = get_json(edge_url)
    while time.monotonic() < end:
        labels = status["printers"][0]["labels"]
        if labels.get("printed", 0) + labels.get("delivered", 0) >= count:
            break
        time.sleep(0.2)
        status = get_json(edge_url)
    return status


def _keep_scanning(console: Console, devices: subprocess.Popen[Any], group: DemoProcesses) -> None:
    """Until Ctrl-C, every line typed here goes to the twins: a barcode to the scanner, or
    ``DEVICE-ID COMMAND`` to any of them (as ``jxc sim site`` takes it)."""
    console.print(
        "\nRunning. Type a barcode and Enter to scan it (<GS> for the GS1 separator, "
        f"!garbage for line noise), or a device command such as `{SCALE_ID} weight 2.5 kg` "
        f"or `{PRINTER_ID} paper-out` (`{PRINTER_ID} help` lists them); watch the stock URL "
        "and the edge status. Ctrl-C stops everything."
    )
    with contextlib.suppress(KeyboardInterrupt):
        if sys.stdin.isatty():
            for line in sys.stdin:
                if devices.stdin is None or any(p.poll() is not None for p in group.procs):
                    break
                devices.stdin.write(_to_twin(line))
                devices.stdin.flush()
        while all(p.poll() is None for p in group.procs):
            time.sleep(0.5)


def _to_twin(line: str) -> str:
    """A typed line for ``jxc sim site``: addressed to a device, or a scan by default."""
    first = line.split(maxsplit=1)[0] if line.strip() else ""
    if first in (SCANNER_ID, SCALE_ID, PRINTER_ID):
        return line
    return f"{SCANNER_ID} {line}"


def _wait_for_master_data(edge_url: str, items: int, po_lines: int) -> bool:
    """True once the edge has cached the items and the open PO lines (within 30 s)."""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError, KeyError):
            cached = get_json(edge_url)["master_data"]["cached"]
            if cached["items"] >= items and cached["po_lines"] >= po_lines:
                return True
        time.sleep(0.1)
    return False


def _scan_all(stdin: IO[str] | None, console: Console) -> None:
    """The delivery: cartons scanned, then a sack of rice put on the scale and scanned."""
    assert stdin is not None
    for code, _ in SCANS:
        stdin.write(f"{SCANNER_ID} {code}\n")
        stdin.flush()
        console.print(f"  scanned     {code.replace(GS, '<GS>')}")
        time.sleep(0.05)
    # The sack swings for half a second when it lands; the station waits for it to settle.
    stdin.write(f"{SCALE_ID} weight {RICE_WEIGHT} kg 0.5\n{SCANNER_ID} ]E0{RICE_CODE[1:]}\n")
    stdin.flush()
    console.print(f"  weighed     a sack of rice ({RICE_WEIGHT} kg) and scanned its code")


def _wait_for_stock(
    central_url: str, expected: Decimal, *, proc: subprocess.Popen[Any], token: str
) -> list[dict[str, Any]] | None:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc.poll() is not None:
            return None
        with contextlib.suppress(OSError, ValueError):
            stock: list[dict[str, Any]] = get_json(
                f"{central_url}{paths.STOCK}?site_id={SITE_ID}", token=token
            )
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
    labels = edge_status["printers"][0]["labels"]
    console.print(
        f"  scale: {edge_status['weighings']['stable']} stable weighing(s); "
        f"labels: {labels.get('printed', 0)} printed, {labels.get('delivered', 0)} held by "
        f"the printer, {labels.get('pending', 0)} owed"
    )


def _show_made(console: Console, made: Made) -> None:
    """What the office work made at central, by module (its ids are in ``demo.json``)."""
    table = Table(title="Made at central, by module")
    table.add_column("module")
    table.add_column("document")
    table.add_column("id")
    for name, value in made.ids.items():
        module = MODULE_OF.get(name, "")
        table.add_row(module, name.replace("_", " "), value)
    console.print(table)


MODULE_OF = {
    "requisition": "purchasing",
    "purchase_order": "purchasing",
    "supplier_invoice": "purchasing",
    "price_list": "sales",
    "sales_order": "sales",
    "shipment": "sales",
    "sales_invoice": "sales",
    "customer_return": "sales",
    "other_receipt": "inventory",
    "other_issue": "inventory",
    "write_off": "inventory",
    "transfer": "inventory",
    "stock_count": "inventory",
    "stock_value": "valuation",
    "webhook": "integrations",
    "feedback": "feedback",
    "period": "period close",
}
