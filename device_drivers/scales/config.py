"""Checks and helpers that every scale driver's config dataclass shares.

Each driver keeps its own frozen dataclass (its fields, their order and defaults are that
driver's documented options) and its own ``__post_init__``, which calls these checks in the
order its errors should come. What a serial/TCP address is, which serial settings are
possible and what the stable-weight options allow is decided here once, so every driver
refuses the same mistake with the same words.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Protocol, get_args
from urllib.parse import urlsplit

from device_drivers.errors import DeviceConfigError
from device_drivers.scales.stable import StableMode
from device_drivers.transport import ByteTransport, Parity, SerialTransport, TcpTransport

__all__ = [
    "TCP_SCHEME",
    "LineSettings",
    "check_address",
    "check_division",
    "check_positive",
    "check_reconnect",
    "check_serial",
    "check_stable",
    "check_stable_mode",
    "line_transport",
    "tcp_endpoint",
]

TCP_SCHEME = "tcp://"
"""The prefix that makes an address a TCP bridge (or a Modbus TCP device) instead of a port."""


class LineSettings(Protocol):
    """What a config needs for :func:`line_transport`: an address and its line settings."""

    @property
    def address(self) -> str | os.PathLike[str]: ...

    @property
    def baudrate(self) -> int: ...

    @property
    def bytesize(self) -> int: ...

    @property
    def parity(self) -> Parity: ...

    @property
    def stopbits(self) -> int: ...

    @property
    def reply_timeout(self) -> float: ...


def tcp_endpoint(address: str | os.PathLike[str]) -> tuple[str, int] | None:
    """``(host, port)`` when the address is ``tcp://host:port``, ``None`` otherwise (a
    serial port, or a ``tcp://`` address that does not parse)."""
    text = os.fspath(address)
    if not text.startswith(TCP_SCHEME):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        return None
    return parts.hostname, port


def check_address(device_id: str, address: str | os.PathLike[str]) -> None:
    """A device id, and an address that is a serial port or a well-formed ``tcp://``."""
    if not device_id:
        raise DeviceConfigError("device_id must not be empty")
    if not os.fspath(address):
        raise DeviceConfigError(f"{device_id}: address must not be empty")
    if tcp_endpoint(address) is None and os.fspath(address).startswith(TCP_SCHEME):
        raise DeviceConfigError(f"{device_id}: want tcp://host:port, got {address!r}")


def check_serial(
    device_id: str,
    baudrate: int,
    bytesize: int,
    parity: str,
    stopbits: int,
    *,
    bytesizes: tuple[int, ...] = (5, 6, 7, 8),
) -> None:
    """Serial settings a UART can be set to (``bytesizes`` narrows what the protocol allows)."""
    if baudrate <= 0 or bytesize not in bytesizes or stopbits not in (1, 2):
        raise DeviceConfigError(f"{device_id}: impossible serial settings")
    if parity not in get_args(Parity):
        raise DeviceConfigError(f"{device_id}: parity must be N, E or O, got {parity!r}")


def check_stable_mode(device_id: str, stable_mode: str) -> None:
    """One of the :data:`~device_drivers.scales.stable.StableMode` names."""
    if stable_mode not in get_args(StableMode):
        raise DeviceConfigError(
            f"{device_id}: stable_mode must be device or consecutive, got {stable_mode!r}"
        )


def check_stable(device_id: str, stable_mode: str, stable_readings: int) -> None:
    """A stable mode, and a run long enough to mean something (one reading is no run)."""
    check_stable_mode(device_id, stable_mode)
    if stable_readings < 2:
        raise DeviceConfigError(f"{device_id}: stable_readings must be at least 2")


def check_division(
    device_id: str, division: Decimal | None, *, what: str = "a positive decimal weight"
) -> None:
    """``None`` (take the division from the readings) or an exact, positive weight."""
    if division is not None and not (
        isinstance(division, Decimal) and division.is_finite() and division > 0
    ):
        raise DeviceConfigError(f"{device_id}: division must be {what}")


def check_positive(device_id: str, **durations: float) -> None:
    """Every one of ``durations`` above zero; the error names them all, as one rule."""
    if min(durations.values()) <= 0:
        *others, last = durations
        names = f"{', '.join(others)} and {last}" if others else last
        raise DeviceConfigError(f"{device_id}: {names} must be positive")


def check_reconnect(device_id: str, min_delay: float, max_delay: float) -> None:
    """A backoff that starts above zero and does not shrink."""
    if not 0 < min_delay <= max_delay:
        raise DeviceConfigError(f"{device_id}: need 0 < reconnect_min_delay <= reconnect_max_delay")


def line_transport(config: LineSettings, *, xonxoff: bool = False) -> ByteTransport:
    """The byte transport a line scale's address calls for: TCP for ``tcp://``, else serial.

    The reply timeout bounds the TCP connect and a serial write alike: a device that takes
    longer to accept bytes than to answer them is not there.
    """
    endpoint = tcp_endpoint(config.address)
    if endpoint is not None:
        return TcpTransport(*endpoint, connect_timeout=config.reply_timeout)
    return SerialTransport(
        config.address,
        baudrate=config.baudrate,
        bytesize=config.bytesize,
        parity=config.parity,
        stopbits=config.stopbits,
        xonxoff=xonxoff,
        write_timeout=config.reply_timeout,
    )
