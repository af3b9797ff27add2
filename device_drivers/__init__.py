"""Device libraries for the edge agent: one narrow interface per device class.

This package knows nothing of the agent, the ledger or the wire contract. It may import
only the standard library and the device libraries (pyserial, biip, ...), so it can be
tested, and reused, with nothing but a device or its simulator twin on the other end.
"""

from device_drivers.errors import (
    DeviceConfigError,
    DeviceError,
    DeviceUnavailableError,
    InvalidGs1Error,
    RejectedInputError,
)
from device_drivers.status import DeviceState, DeviceStatus

__all__ = [
    "DeviceConfigError",
    "DeviceError",
    "DeviceState",
    "DeviceStatus",
    "DeviceUnavailableError",
    "InvalidGs1Error",
    "RejectedInputError",
]
