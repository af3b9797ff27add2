"""``jxc sim site``: every device a site file names, as twins, from that one file.

The site file is the edge agent's own TOML (``[[devices.scanners]]``, ``[[devices.scales]]``,
``[[devices.printers]]``, each with ``id``, ``driver`` and the driver's options), read here
without the agent's or the drivers' code: the twins must find the devices exactly where the
file tells the agent to look, so the file is the only thing both sides share. Each driver
name maps to the twin that speaks its protocol, placed where the driver's options point:

========================  ==================================================================
``serial-line`` scanner   a pty behind the symlink ``port``
``mqtt-scanner``          a client of the broker ``host``:``port``, publishing on ``topic``
``mt-sics`` scale         a pty behind ``address``, or a listener on ``tcp://127.0.0.1:PORT``
``toledo-8217`` scale     a pty behind ``address``
``modbus-scale``          a server on ``tcp://127.0.0.1:PORT`` or an RTU bus behind the pty
                          path ``address``, serving ``profile`` as ``unit_id``; devices that
                          share an address share one twin (one bus, several unit ids)
``mqtt-scale``            a client of the broker, on the driver's topics
``zpl``, ``tspl`` printer a listener on ``127.0.0.1:port`` (``host`` must be loopback), or a
                          pty behind ``serial_port``
========================  ==================================================================

Relative paths are taken from the site file's folder, as the agent does. A driver with no
twin here (a third party's, through the ``jxc.drivers`` entry points) is an error naming
the known ones, unless ``skip_unknown`` is set: then it is left out with a warning, since a
site simulated without one of its devices would otherwise look complete.

Starting is all or nothing: if one twin fails, the ones already running are closed again.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from simulators.running import RunningTwin, resolve_profile

if TYPE_CHECKING:
    from simulators.mqtt_devices import BrokerLogin
    from simulators.running import Handler

__all__ = ["KNOWN_DRIVERS", "SimulatedSite", "SiteError", "SiteTwin", "plan_site", "start_site"]

KNOWN_DRIVERS: dict[str, tuple[str, ...]] = {
    "scanners": ("serial-line", "mqtt-scanner"),
    "scales": ("mt-sics", "toledo-8217", "modbus-scale", "mqtt-scale"),
    "printers": ("zpl", "tspl"),
}
"""The drivers each device class can have a twin for, by the name a site file gives them."""

_LOOPBACK = ("127.0.0.1", "localhost")
_TERMINATORS = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n"}


class SiteError(Exception):
    """The site file cannot be simulated; the message names the device and the reason."""


@dataclass
class SiteTwin:
    """One device of the site and the twin standing in for it."""

    device_id: str
    section: str
    driver: str
    endpoint: str
    command: Handler
    help: str


@dataclass
class _Plan:
    """How to start one twin (possibly serving several devices: a shared Modbus bus)."""

    device_ids: list[str]
    section: str
    driver: str
    start: Callable[[], RunningTwin]
    units: list[int] = field(default_factory=list)
    key: str = ""
    """The pty link or TCP endpoint it takes (two devices cannot share one), or ``""``."""
    profile: Path | None = None


@dataclass
class SimulatedSite:
    """Every twin of a site, started; :meth:`close` stops them all (in reverse order)."""

    devices: list[SiteTwin]
    twins: list[RunningTwin]
    warnings: list[str]

    def device(self, device_id: str) -> SiteTwin:
        for device in self.devices:
            if device.device_id == device_id:
                return device
        known = ", ".join(d.device_id for d in self.devices)
        raise ValueError(f"no device {device_id!r} in this site; devices: {known}")

    def close(self) -> None:
        while self.twins:
            with contextlib.suppress(Exception):  # close the others whatever one does
                self.twins.pop().close()


def read_site(path: Path) -> Mapping[str, Any]:
    """The site file's TOML, or a :class:`SiteError` saying why not."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path}: no such site file") from None
    except OSError as exc:
        raise SiteError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SiteError(f"{path}: not valid TOML: {exc}") from None


@dataclass(frozen=True)
class _Device:
    """One device section of the site file, checked for an id and a driver."""

    device_id: str
    section: str
    driver: str
    options: Mapping[str, Any]
    base: Path

    def plan(self, start: Callable[[], RunningTwin], key: str = "") -> _Plan:
        return _Plan([self.device_id], self.section, self.driver, start, key=key)

    def text(self, name: str) -> str:
        value = self.options.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"needs {name} (a non-empty string)")
        return value

    def path(self, name: str) -> Path:
        path = Path(self.text(name)).expanduser()
        return path if path.is_absolute() else self.base / path

    def port(self, name: str, default: int) -> int:
        port = self.options.get(name, default)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"{name} must be a TCP port number, got {port!r}")
        return port


def plan_site(
    config: Mapping[str, Any], base: Path, *, skip_unknown: bool = False
) -> tuple[list[_Plan], list[str]]:
    """Check every device section and decide which twin stands in for it; start nothing.

    Returns the plans and the warnings (devices left out). Everything that can be wrong
    with the file is found here, before the first twin opens a port.
    """
    plans: list[_Plan] = []
    warnings: list[str] = []
    claimed: dict[str, str] = {}  # pty link or TCP endpoint -> the device that has it
    buses: dict[str, _Plan] = {}
    for device in _devices(config, base):
        if device.driver not in KNOWN_DRIVERS[device.section]:
            message = _unknown_driver(device)
            if not skip_unknown:
                raise SiteError(message)
            warnings.append(f"{message}; left out")
            continue
        try:
            plan = _PLANNERS[device.driver](device, buses)
        except ValueError as exc:
            raise SiteError(f"{device.device_id}: {exc}") from None
        if plan is None:
            continue  # one more unit id on a Modbus bus already planned
        if plan.key in claimed:
            raise SiteError(
                f"{device.device_id}: {plan.key} is already taken by {claimed[plan.key]}"
            )
        if plan.key:
            claimed[plan.key] = device.device_id
        plans.append(plan)
    return plans, warnings


def _devices(config: Mapping[str, Any], base: Path) -> list[_Device]:
    devices = config.get("devices", {})
    if not isinstance(devices, Mapping):
        raise SiteError("[devices] must be a table")
    unknown = [section for section in devices if section not in KNOWN_DRIVERS]
    if unknown:
        raise SiteError(
            f"devices.{unknown[0]}: unknown device class; known: {', '.join(KNOWN_DRIVERS)}"
        )
    found: list[_Device] = []
    for section in KNOWN_DRIVERS:
        entries = devices.get(section, [])
        if not isinstance(entries, list):
            raise SiteError(f"devices.{section} must be an array of tables ([[devices.{section}]])")
        for index, entry in enumerate(entries):
            where = f"devices.{section}[{index}]"
            if not isinstance(entry, Mapping):
                raise SiteError(f"{where} must be a table")
            device_id, driver = entry.get("id"), entry.get("driver")
            if not isinstance(device_id, str) or not device_id:
                raise SiteError(f"{where}: needs an id (a non-empty string)")
            if not isinstance(driver, str) or not driver:
                raise SiteError(f"{device_id}: needs a driver name")
            if any(d.device_id == device_id for d in found):
                raise SiteError(f"{device_id}: two devices have this id")
            options = {k: v for k, v in entry.items() if k not in ("id", "driver")}
            found.append(_Device(device_id, section, driver, options, base))
    return found


def _unknown_driver(device: _Device) -> str:
    for other, names in KNOWN_DRIVERS.items():
        if device.driver in names:
            return (
                f"{device.device_id}: {device.driver} is a driver for devices.{other}, "
                f"not devices.{device.section}"
            )
    return (
        f"{device.device_id}: no twin for driver {device.driver!r} (a third-party driver?); "
        f"twins exist for {device.section}: {', '.join(KNOWN_DRIVERS[device.section])}"
    )


def _plan_serial_scanner(device: _Device, _buses: dict[str, _Plan]) -> _Plan:
    from simulators.running import start_serial_scanner  # noqa: PLC0415 - loaded if used

    link = device.path("port")
    terminator = _TERMINATORS.get(str(device.options.get("terminator", "CR")).upper())
    if terminator is None:
        raise ValueError("terminator must be CR, LF or CRLF")
    return device.plan(lambda: start_serial_scanner(link, terminator=terminator), str(link))


def _plan_mtsics(device: _Device, _buses: dict[str, _Plan]) -> _Plan:
    from simulators.running import start_mtsics_scale  # noqa: PLC0415 - loaded if used

    address = device.text("address")
    if address.startswith("tcp://"):
        port = _loopback_port(address)
        key = f"tcp://127.0.0.1:{port}" if port else ""
        return device.plan(lambda: start_mtsics_scale(None, pty=False, tcp_port=port), key)
    link = device.path("address")
    return device.plan(lambda: start_mtsics_scale(link), str(link))


def _plan_toledo(device: _Device, _buses: dict[str, _Plan]) -> _Plan:
    from simulators.running import start_toledo_scale  # noqa: PLC0415 - loaded if used

    if device.text("address").startswith("tcp://"):
        raise ValueError("the toledo-8217 twin is on a pty only; give address a device path")
    link = device.path("address")
    unit = str(device.options.get("unit", "kg"))
    return device.plan(lambda: start_toledo_scale(link, unit=unit), str(link))


def _plan_modbus(device: _Device, buses: dict[str, _Plan]) -> _Plan | None:
    from simulators.running import start_modbus_scale  # noqa: PLC0415 - loaded if used

    profile = resolve_profile(device.text("profile"), device.base)
    unit_id = device.options.get("unit_id", 1)
    if isinstance(unit_id, bool) or not isinstance(unit_id, int) or not 1 <= unit_id <= 247:
        raise ValueError(f"unit_id must be a whole number 1..247, got {unit_id!r}")
    address = device.text("address")
    tcp_port = _loopback_port(address) if address.startswith("tcp://") else None
    link = None if tcp_port is not None else device.path("address")
    key = str(link) if link is not None else f"tcp://127.0.0.1:{tcp_port}"
    bus = buses.get(key) if tcp_port != 0 else None
    if bus is not None:
        # The driver shares one bus per address among its unit ids: so does the twin.
        if unit_id in bus.units:
            raise ValueError(f"unit id {unit_id} on {key} is already {bus.device_ids[0]}'s")
        if bus.profile != profile:
            raise ValueError(
                f"{key} is served with profile {bus.profile}; one twin serves one profile"
            )
        bus.device_ids.append(device.device_id)
        bus.units.append(unit_id)
        return None
    units: list[int] = [unit_id]

    def start() -> RunningTwin:
        return start_modbus_scale(
            profile, tcp_port=tcp_port, rtu=link is not None, link=link, units=units
        )

    new = device.plan(start, key if tcp_port != 0 else "")
    new.units, new.profile = units, profile
    buses[key] = new
    return new


def _plan_mqtt(device: _Device, _buses: dict[str, _Plan]) -> _Plan:
    from simulators.running import start_mqtt_scale, start_mqtt_scanner  # noqa: PLC0415

    host = str(device.options.get("host", "127.0.0.1"))
    port = device.port("port", 1883)
    device_id = device.device_id
    login = _broker_login(device)

    def topic(name: str, default: str | None = None) -> str | None:
        value = device.options.get(name, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string")
        return value.replace("{device_id}", device_id)

    if device.driver == "mqtt-scanner":
        scan_topic = topic("topic", "jxc/scanners/{device_id}/scan")
        availability = topic("availability_topic") or None
        raw = device.options.get("payload_format") == "raw"
        return device.plan(
            lambda: start_mqtt_scanner(
                device_id,
                host=host,
                port=port,
                topic=scan_topic,
                availability_topic=availability,
                shape="raw" if raw else "json",
                login=login,
            )
        )
    topics = {
        "topic": topic("topic"),
        "command_topic": topic("command_topic"),  # "" in the file: a scale without commands
        "reply_topic": topic("reply_topic"),
        "availability_topic": topic("availability_topic") or None,
    }
    return device.plan(
        lambda: start_mqtt_scale(device_id, host=host, port=port, topics=topics, login=login)
    )


def _broker_login(device: _Device) -> BrokerLogin | None:
    """The twin logs in as the driver does (the site file's ``username``, ``password`` or
    ``password_file``, ``tls`` and ``tls_*`` files): one broker account serves both ends
    of a simulated site. A real device has an account of its own."""
    from simulators.mqtt_devices import BrokerLogin  # noqa: PLC0415 - loaded if used

    options = device.options
    username = options.get("username")
    if username is not None and not isinstance(username, str):
        raise ValueError("username must be a string")
    password = options.get("password")
    if password is not None and not isinstance(password, str):
        raise ValueError("password must be a string")  # never quoted: it is the password
    if options.get("password_file") is not None:
        try:
            password = device.path("password_file").read_text("utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read password_file: {type(exc).__name__}") from None
    files = {
        name: device.path(name) if options.get(name) is not None else None
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file")
    }
    tls = options.get("tls", False)
    if not isinstance(tls, bool):
        raise ValueError("tls must be true or false")
    if username is None and not tls and not any(files.values()):
        return None
    return BrokerLogin(
        username=username,
        password=password,
        tls=tls,
        tls_ca_file=files["tls_ca_file"],
        tls_cert_file=files["tls_cert_file"],
        tls_key_file=files["tls_key_file"],
    )


def _plan_printer(device: _Device, _buses: dict[str, _Plan]) -> _Plan:
    from simulators.running import start_printer  # noqa: PLC0415 - loaded if used

    language: Literal["zpl", "tspl"] = "tspl" if device.driver == "tspl" else "zpl"
    has_host, has_serial = "host" in device.options, "serial_port" in device.options
    if has_host == has_serial:
        raise ValueError("give exactly one of host or serial_port")
    if has_serial:
        link = device.path("serial_port")
        return device.plan(lambda: start_printer(None, link=link, language=language), str(link))
    host = device.text("host")
    if host not in _LOOPBACK:
        raise ValueError(f"host is {host!r}: the twin listens on 127.0.0.1 only")
    port = device.port("port", 9100)
    return device.plan(
        lambda: start_printer(port, language=language),
        f"tcp://127.0.0.1:{port}" if port else "",
    )


_PLANNERS: dict[str, Callable[[_Device, dict[str, _Plan]], _Plan | None]] = {
    "serial-line": _plan_serial_scanner,
    "mqtt-scanner": _plan_mqtt,
    "mt-sics": _plan_mtsics,
    "toledo-8217": _plan_toledo,
    "modbus-scale": _plan_modbus,
    "mqtt-scale": _plan_mqtt,
    "zpl": _plan_printer,
    "tspl": _plan_printer,
}


def _loopback_port(address: str) -> int:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if host not in _LOOPBACK:
        raise ValueError(f"{address}: the twin listens on 127.0.0.1 only (tcp://127.0.0.1:PORT)")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{address}: want tcp://127.0.0.1:PORT")
    return int(port)


def start_site(path: Path, *, skip_unknown: bool = False) -> SimulatedSite:
    """Start a twin for every device of the site file at ``path``: all of them, or none.

    A twin that fails to start (a port in use, a link in a folder that cannot be made)
    closes the ones already started and raises :class:`SiteError` naming the device.
    """
    plans, warnings = plan_site(read_site(path), path.resolve().parent, skip_unknown=skip_unknown)
    site = SimulatedSite([], [], warnings)
    for plan in plans:
        try:
            for link in _links_of(plan):
                link.parent.mkdir(parents=True, exist_ok=True)
            twin = plan.start()
        except Exception as exc:
            site.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise SiteError(f"{', '.join(plan.device_ids)}: twin did not start: {reason}") from exc
        site.twins.append(twin)
        for n, device_id in enumerate(plan.device_ids):
            command = twin.command
            if twin.for_unit is not None and plan.units:
                command = twin.for_unit(plan.units[n])
            site.devices.append(
                SiteTwin(device_id, plan.section, plan.driver, twin.endpoint, command, twin.help)
            )
    return site


def _links_of(plan: _Plan) -> list[Path]:
    return [Path(plan.key)] if plan.key and not plan.key.startswith("tcp://") else []
