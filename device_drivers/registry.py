"""Drivers are chosen by name in the site file; anyone can add one through an entry point.

A driver package declares, in its own ``pyproject.toml``::

    [project.entry-points."jxc.drivers"]
    acme-scanner = "acme_jxc:create_scanner"

and a site file then says ``driver = "acme-scanner"``. The factory is called with the
device's id and the rest of its section as options, and must return an object that
satisfies the interface of the section's device class (``Scanner`` for
``[[devices.scanners]]``, ``Scale`` for ``[[devices.scales]]``, ``LabelPrinter`` for
``[[devices.printers]]``). Nothing in jxc is edited to add a device, and a wrong name or a
wrong object is a :class:`~device_drivers.errors.DeviceConfigError` that says what is
installed, found when the agent starts, not at the first scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Literal, Protocol

from device_drivers.errors import DeviceConfigError
from device_drivers.printers.base import LabelPrinter
from device_drivers.scales.base import Scale
from device_drivers.scanners.base import Scanner

__all__ = [
    "DRIVER_GROUP",
    "DeviceClass",
    "DriverFactory",
    "driver_names",
    "open_printer",
    "open_scale",
    "open_scanner",
]

DRIVER_GROUP = "jxc.drivers"

DeviceClass = Literal["scanner", "scale", "printer"]


_INTERFACES: dict[DeviceClass, tuple[type, str]] = {
    "scanner": (Scanner, "read_scan, status and close"),
    "scale": (Scale, "read_stable, read_now, zero, tare, clear_tare, status and close"),
    "printer": (LabelPrinter, "print_label, status and close"),
}


class DriverFactory(Protocol):
    """What an entry point in ``jxc.drivers`` must name."""

    def __call__(self, device_id: str, options: Mapping[str, object]) -> object: ...


def _installed() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=DRIVER_GROUP)}


def driver_names() -> list[str]:
    """Every driver name installed in this environment, sorted."""
    return sorted(_installed())


def _load(name: str) -> DriverFactory:
    entry = _installed().get(name)
    if entry is None:
        raise DeviceConfigError(
            f"no device driver named {name!r} is installed; installed: "
            f"{', '.join(driver_names()) or 'none'}"
        )
    try:
        factory: DriverFactory = entry.load()
    except Exception as exc:  # a broken plugin is a configuration problem, said plainly
        raise DeviceConfigError(
            f"device driver {name!r} ({entry.value}) fails to load: {exc}"
        ) from exc
    return factory


def _open(
    device_class: DeviceClass, driver: str, device_id: str, options: Mapping[str, object]
) -> object:
    """Build a device and check it satisfies its class's interface.

    A configuration error names the device once, whoever raised it: the drivers' own
    checks start with the id, a shared helper (a profile loader) or a third party's driver
    may not, and a site file with ten scales needs to say which one is wrong.
    """
    try:
        device = _load(driver)(device_id, options)
    except DeviceConfigError as exc:
        if str(exc).startswith(f"{device_id}: "):
            raise
        raise DeviceConfigError(f"{device_id}: {exc}") from exc
    interface, methods = _INTERFACES[device_class]
    if not isinstance(device, interface):
        close = getattr(device, "close", None)
        if callable(close):
            close()  # it may hold a port open; the error must not leak it
        raise DeviceConfigError(
            f"{device_id}: driver {driver!r} made a {type(device).__name__}, which is not a "
            f"{interface.__name__} (needs {methods}); is it a {device_class} driver?"
        )
    return device


def open_scanner(driver: str, device_id: str, options: Mapping[str, object]) -> Scanner:
    """Build the scanner a site file describes, checking it really is a :class:`Scanner`."""
    device = _open("scanner", driver, device_id, options)
    assert isinstance(device, Scanner)
    return device


def open_scale(driver: str, device_id: str, options: Mapping[str, object]) -> Scale:
    """Build the scale a site file describes, checking it really is a :class:`Scale`."""
    device = _open("scale", driver, device_id, options)
    assert isinstance(device, Scale)
    return device


def open_printer(driver: str, device_id: str, options: Mapping[str, object]) -> LabelPrinter:
    """Build the label printer a site file describes, checking its interface."""
    device = _open("printer", driver, device_id, options)
    assert isinstance(device, LabelPrinter)
    return device
