"""``jxc device ...``: commissioning a site's devices without starting the agent.

A technician wiring a dock wants to know, device by device, whether the box can reach it
and what it says: is the scanner there, does the scale give a stable weight, does a label
come out. Every command reads the same site file the agent runs on and opens the devices
through the same drivers, so what works here works in the agent. Stop the agent first: a
serial port opens for one process only.

Every command takes ``--json`` (one JSON object per line) for scripts; without it the
answer is a short table. The exit code says whether the check passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from device_drivers.printers import LabelPrinter
    from device_drivers.scales import Scale
    from device_drivers.scanners import Scan, Scanner
    from edge_agent.config import DeviceSection, SiteConfig

app = typer.Typer(
    help="Commission a site's devices: list them, weigh, listen, print a test label.",
    no_args_is_help=True,
    add_completion=False,
)

SiteFile = Annotated[Path, typer.Option("--config", "-c", help="the site's TOML file")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")]


def _emit(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    for row in rows:
        typer.echo("  ".join(f"{key}={_plain(value)}" for key, value in row.items()))


def _plain(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _about(device_id: str, message: str) -> str:
    """``DEVICE: what happened``, the id said once: driver errors already start with it."""
    return message if message.startswith(f"{device_id}: ") else f"{device_id}: {message}"


def _without_id(device_id: str, message: str) -> str:
    """The message without its leading ``DEVICE:``, for a row that names the device already."""
    return message.removeprefix(f"{device_id}: ")


def _site(config: Path) -> SiteConfig:
    from edge_agent.cli import load_or_exit  # noqa: PLC0415

    return load_or_exit(config)


def _pick(site: SiteConfig, device_class: str, wanted: str | None) -> DeviceSection:
    """The device of that class named ``wanted``, or the only one there is."""
    sections = {
        "scanner": site.devices.scanners,
        "scale": site.devices.scales,
        "printer": site.devices.printers,
    }[device_class]
    if wanted is not None:
        for section in sections:
            if section.id == wanted:
                return section
        known = ", ".join(s.id for s in sections) or "none"
        raise _fail(f"no {device_class} {wanted!r} in the site file (its {device_class}s: {known})")
    if len(sections) != 1:
        known = ", ".join(s.id for s in sections) or "none"
        raise _fail(f"name the {device_class} with --{device_class} (the site has: {known})")
    return sections[0]


def _open(device_class: str, section: DeviceSection) -> Any:
    """The device built by its driver; a :class:`DeviceConfigError` if it cannot be."""
    from device_drivers.registry import open_printer, open_scale, open_scanner  # noqa: PLC0415

    opener: dict[str, Callable[[str, str, Mapping[str, object]], Any]] = {
        "scanner": open_scanner,
        "scale": open_scale,
        "printer": open_printer,
    }
    return opener[device_class](section.driver, section.id, section.options)


@contextmanager
def _opened(device_class: str, section: DeviceSection) -> Iterator[Any]:
    """The device built by its driver, closed afterwards; a config error is a clear exit."""
    from device_drivers.errors import DeviceConfigError  # noqa: PLC0415

    try:
        device = _open(device_class, section)
    except DeviceConfigError as exc:
        raise _fail(_about(section.id, str(exc))) from None
    try:
        yield device
    finally:
        device.close()


def _probe(device_class: str, device: Any, wait_s: float) -> dict[str, Any]:
    """Make the driver try its device, then report what it found, within ``wait_s``.

    A scale that gave no weight is reported with the error its last try ended in (said in
    the engineer's words by the driver), not only with the counters it left behind.
    """
    from device_drivers.scales import ScaleError  # noqa: PLC0415

    deadline = time.monotonic() + wait_s
    if device_class == "scanner":
        scanner: Scanner = device
        while time.monotonic() < deadline and scanner.status().state != "connected":
            scanner.read_scan(timeout=0.1)  # the driver (re)connects while it reads
        return scanner.status().as_dict()
    if device_class == "scale":
        scale: Scale = device
        problem: ScaleError | None = None
        while True:
            try:
                scale.read_now()
                problem = None
                break
            except ScaleError as exc:
                problem = exc
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        found = scale.status().as_dict()
        if problem is not None:
            found["last_error"] = f"{problem.reason}: {problem.detail}"
        return found
    printer: LabelPrinter = device
    status = printer.printer_status().as_dict()
    return {
        "state": "connected" if status["online"] else "disconnected",
        "printer": status,
    }


@app.command("list")
def list_devices(
    config: SiteFile,
    wait: Annotated[float, typer.Option(min=0.1, max=60, help="seconds per device")] = 3.0,
    as_json: AsJson = False,
) -> None:
    """Every device in the site file, whether it answers, and its error counters.

    A device whose section the driver refuses is ``misconfigured``, with the driver's reason
    as its ``last_error`` (``config: ...``). Exits 1 if any device is not connected, so a
    commissioning script can gate on it.
    """
    from device_drivers.errors import DeviceConfigError  # noqa: PLC0415

    site = _site(config)
    rows: list[dict[str, Any]] = []
    for device_class, section in site.devices.all():
        try:
            device = _open(device_class, section)
        except DeviceConfigError as exc:  # say why, and go on with the others
            reason = _without_id(section.id, str(exc))
            found: dict[str, Any] = {"state": "misconfigured", "last_error": f"config: {reason}"}
        else:
            try:
                found = _probe(device_class, device, wait)
            finally:
                device.close()
        rows.append(
            {
                "id": section.id,
                "class": device_class,
                "driver": section.driver,
                **{k: v for k, v in found.items() if k != "device_id"},
            }
        )
    _emit(rows, as_json)
    if any(row["state"] != "connected" for row in rows):
        raise typer.Exit(1)


@app.command()
def weigh(
    config: SiteFile,
    scale_id: Annotated[str | None, typer.Option("--scale", help="the scale's id")] = None,
    timeout: Annotated[float, typer.Option(min=0.1, max=120, help="seconds to settle")] = 5.0,
    now: Annotated[bool, typer.Option("--now", help="the current, maybe moving, weight")] = False,
    as_json: AsJson = False,
) -> None:
    """Read one stable weight (or, with --now, whatever the scale shows)."""
    from device_drivers.scales import ScaleError  # noqa: PLC0415

    section = _pick(_site(config), "scale", scale_id)
    with _opened("scale", section) as scale:
        try:
            reading = scale.read_now() if now else scale.read_stable(timeout)
        except ScaleError as exc:
            raise _fail(_about(section.id, str(exc))) from None
    _emit(
        [
            {
                "id": section.id,
                "net": f"{reading.net:f}",
                "unit": reading.unit,
                "gross": None if reading.gross is None else f"{reading.gross:f}",
                "tare": None if reading.tare is None else f"{reading.tare:f}",
                "stable": reading.stable,
                "raw": reading.raw.decode("ascii", "backslashreplace"),
            }
        ],
        as_json,
    )


def _scan_row(scan: Scan) -> dict[str, Any]:
    gs1 = scan.gs1
    net_weight = gs1.net_weight_kg if gs1 else None
    return {
        "device": scan.device_id,
        "data": scan.data,
        "symbology": scan.symbology,
        "gtin": gs1.gtin if gs1 else None,
        "lot": gs1.lot if gs1 else None,
        "expiry": gs1.expiry.isoformat() if gs1 and gs1.expiry else None,
        "serial": gs1.serial if gs1 else None,
        "sscc": gs1.sscc if gs1 else None,
        "count": gs1.count if gs1 else None,
        "content_gtin": gs1.content_gtin if gs1 else None,
        "net_weight_kg": None if net_weight is None else f"{net_weight:f}",
    }


@app.command()
def listen(
    config: SiteFile,
    scanner_id: Annotated[str | None, typer.Option("--scanner", help="the scanner's id")] = None,
    count: Annotated[int, typer.Option(min=1, help="stop after this many scans")] = 1,
    timeout: Annotated[float, typer.Option(min=0.1, help="give up after this many seconds")] = 30,
    as_json: AsJson = False,
) -> None:
    """Print scans as they arrive (parsed GS1 fields included), then the error counters.

    Exits 1 if fewer than ``--count`` good scans came in time: rejected reads (noise, bad
    check digits) are counted in the status line, never printed as scans.
    """
    section = _pick(_site(config), "scanner", scanner_id)
    seen = 0
    deadline = time.monotonic() + timeout
    with _opened("scanner", section) as scanner:
        while seen < count and (left := deadline - time.monotonic()) > 0:
            scan = scanner.read_scan(timeout=min(left, 0.5))
            if scan is not None:
                seen += 1
                _emit([_scan_row(scan)], as_json)
        status = scanner.status().as_dict()
    _emit(
        [{"id": section.id, "scans": seen, **{k: status[k] for k in ("state", "errors")}}], as_json
    )
    if seen < count:
        raise typer.Exit(1)


@app.command("test-label")
def print_test_label(
    config: SiteFile,
    printer_id: Annotated[str | None, typer.Option("--printer", help="the printer's id")] = None,
    as_json: AsJson = False,
) -> None:
    """Print one test label and say whether the printer confirmed it."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from device_drivers.printers import LabelJob, sample_label  # noqa: PLC0415
    from jxc.ids import uuid7  # noqa: PLC0415

    site = _site(config)
    section = _pick(site, "printer", printer_id)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    # A fresh id every time: the printer's journal answers a known id without printing.
    job_id = f"test-{uuid7().hex}"
    label = sample_label(f"{site.site.id} {section.id}", stamp, job_id)
    with _opened("printer", section) as printer:
        result = printer.print_label(LabelJob(job_id=job_id, label=label))
    _emit(
        [
            {
                "id": section.id,
                "job_id": job_id,
                "outcome": result.outcome,
                "attempts": result.attempts,
                "detail": result.detail,
            }
        ],
        as_json,
    )
    if not result.printed:
        raise typer.Exit(1)


@app.command("printer-status")
def printer_status(
    config: SiteFile,
    printer_id: Annotated[str | None, typer.Option("--printer", help="the printer's id")] = None,
    as_json: AsJson = False,
) -> None:
    """Ask the printer how it is (paper, head, pause, buffer); exits 1 unless ready."""
    section = _pick(_site(config), "printer", printer_id)
    with _opened("printer", section) as printer:
        status = printer.printer_status()
    _emit([{"id": section.id, **status.as_dict()}], as_json)
    if not status.ready:
        raise typer.Exit(1)


_KINDS = {"_pdl-datastream._tcp.local.": "printer", "_mqtt._tcp.local.": "mqtt-broker"}


@app.command()
def discover(
    wait: Annotated[
        float, typer.Option(min=0.5, max=60, help="seconds to listen for announcements")
    ] = 3.0,
    as_json: AsJson = False,
) -> None:
    """List label printers and MQTT brokers that announce themselves on the network.

    Browses zeroconf for ``_pdl-datastream._tcp`` (raw port-9100 printers: Zebra, TSC and
    most network label printers announce it) and ``_mqtt._tcp`` for ``--wait`` seconds,
    then prints each one's kind, name, host, address and port: the ``host``/``port`` a
    ``[[devices.printers]]`` or an MQTT device section wants. Needs no site file. Exits 1
    if nothing answered (or ``JXC_DISCOVERY=off``), so a script can tell.
    """
    from jxc.discovery import MQTT_TYPE, PRINTER_TYPE, browse, discovery_enabled  # noqa: PLC0415

    if not discovery_enabled():
        raise _fail("discovery is off here (JXC_DISCOVERY=off)")
    try:
        found = browse([PRINTER_TYPE, MQTT_TYPE], wait)
    except OSError as exc:
        raise _fail(f"cannot listen for announcements on this network: {exc}") from None
    # A printer's TXT record ``ty`` names its model (the DNS-SD printing convention).
    rows = [
        {
            "kind": _KINDS[item.service_type],
            "name": item.name,
            "host": item.host,
            "address": item.address,
            "port": item.port,
            "model": item.properties.get("ty") or None,
        }
        for item in found
    ]
    _emit(rows, as_json)
    if not rows:
        typer.echo(f"nothing announced a printer or a broker within {wait:g} s", err=True)
        raise typer.Exit(1)
