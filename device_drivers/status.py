"""What a driver tells the agent about its device's health.

The agent's status page and its heartbeat to central both need the same snapshot, so the
driver produces one immutable value and the consumers never reach into driver internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = ["Device", "DeviceState", "DeviceStatus"]

DeviceState = Literal["connected", "disconnected", "degraded"]
"""``degraded`` means the port is open but what arrives on it is mostly rejected, which is
what a wrong baud rate or a noisy cable looks like; the device is reachable yet not useful."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A point-in-time snapshot; counters only grow for the life of the driver object."""

    device_id: str
    state: DeviceState
    scans: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    last_error: str | None = None
    reconnects: int = 0

    def as_dict(self) -> dict[str, object]:
        """Plain types only, so it can go straight into ``json.dumps`` or a pydantic model."""
        return {
            "device_id": self.device_id,
            "state": self.state,
            "scans": self.scans,
            "errors": dict(self.errors),
            "last_error": self.last_error,
            "reconnects": self.reconnects,
        }


@runtime_checkable
class Device(Protocol):
    """What every driver is, whatever its class: one way to ask its health, one to stop it.

    Scanners, scales and label printers all extend this, so the agent shows and sends
    their health alike and never probes a driver for what it might offer. ``status`` never
    waits on the device: it says what the driver already knows.
    """

    def status(self) -> DeviceStatus: ...

    def close(self) -> None: ...
