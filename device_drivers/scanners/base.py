"""The scanner interface the edge agent programs against, and the values it yields.

Every scanner driver (serial line today; MQTT or keyboard-wedge later) and every test fake
implements :class:`Scanner`, so a station never knows which transport delivered a scan.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

from device_drivers.status import Device, DeviceStatus

__all__ = [
    "GS1_SYMBOLOGIES",
    "Gs1Data",
    "Gs1Mode",
    "Scan",
    "ScanErrorReason",
    "Scanner",
]

Gs1Mode = Literal["auto", "always", "never"]
"""When to read a payload as GS1 element strings.

``auto`` trusts the AIM identifier and, when the scanner sends none, recognises GS1 by its
shape; ``always`` suits scanners without AIM identifiers that only ever read GS1 labels;
``never`` suits stations that only want the raw text.
"""

ScanErrorReason = Literal["half_line", "too_long", "not_printable", "gs1_invalid", "empty", "io"]
"""Keys of ``DeviceStatus.errors`` for scanners: one counter per way a read can go wrong."""

GS1_SYMBOLOGIES = frozenset({"]C1", "]d2", "]Q3", "]e0"})
"""AIM identifiers whose symbol started with FNC1, i.e. whose payload is GS1 element strings:
GS1-128, GS1 DataMatrix, GS1 QR Code, GS1 DataBar."""


@dataclass(frozen=True, slots=True)
class Gs1Data:
    """The GS1 element strings of one scan, with the ones receiving needs already typed.

    ``elements`` keeps every element found, so a station that needs an AI not lifted into a
    field here (a best-before date, a customer PO number) does not have to parse again.
    """

    gtin: str | None
    lot: str | None
    expiry: datetime.date | None
    serial: str | None
    sscc: str | None
    count: int | None
    net_weight_kg: Decimal | None
    elements: dict[str, str]
    content_gtin: str | None = None
    """AI (02): the GTIN of the trade items inside a logistic unit, which GS1 pairs with a
    count (37); (01) names the unit itself. A receiving station books the contents."""


@dataclass(frozen=True, slots=True)
class Scan:
    """One good read from one scanner.

    ``raw`` is kept byte-for-byte so a disputed scan can be audited against what the wire
    carried; ``data`` is what a station should look up.
    """

    device_id: str
    raw: bytes
    data: str
    symbology: str | None
    gs1: Gs1Data | None
    received_at: datetime.datetime


@runtime_checkable
class Scanner(Device, Protocol):
    """A source of scans that survives its device coming and going.

    ``read_scan`` returns ``None`` when nothing arrived in time and never raises because the
    device went away: drivers reconnect on their own and report it through ``status``, so a
    station loop needs no error handling to stay alive.
    """

    def read_scan(self, timeout: float) -> Scan | None: ...

    def status(self) -> DeviceStatus: ...

    def close(self) -> None: ...
