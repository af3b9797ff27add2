"""Drivers are chosen by name in the site file; anyone can add one through an entry point.

A driver package declares, in its own ``pyproject.toml``::

    [project.entry-points."jxc.drivers"]
    acme-scanner = "acme_jxc:create_scanner"

and a site file then says ``driver = "acme-scanner"``. The factory is called with the
device's id and the rest of its section as options, and must return an object that
satisfies the interface of the section's device class (``Scanner`` for
``[[devices.scanners]]``). Nothing in jxc is edited to add a device, and a wrong name or a
wrong object is a :class:`~device_drivers.errors.DeviceConfigError` that says what is
installed, found when the agent starts, not at the first scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Literal, Protocol

from device_drivers.errors import DeviceConfigError
from device_drivers.scanners.base import Scanner

__all__ = ["DRIVER_GROUP", "DeviceClass", "DriverFactory", "driver_names", "open_scanner"]

DRIVER_GROUP = "jxc.drivers"

DeviceClass = Literal["scanner"]


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


def open_scanner(driver: str, device_id: str, options: Mapping[str, object]) -> Scanner:
    """Build the scanner a site file describes, checking it really is a :class:`Scanner`."""
    device = _load(driver)(device_id, options)
    if not isinstance(device, Scanner):
        raise DeviceConfigError(
            f"driver {driver!r} made a {type(device).__name__}, which is not a Scanner "
            "(needs read_scan, status and close)"
        )
    return device
