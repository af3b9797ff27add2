"""The scale interface the edge agent programs against, and the values it returns.

Every scale driver (MT-SICS today; Toledo 8217, continuous output, Modbus and MQTT later)
and every test fake implements :class:`Scale`, so a receiving station never knows which
protocol weighed its pallet. Weights are :class:`~decimal.Decimal` from end to end: a
weight goes into the ledger, and a float would put ``1.2500000000000002 kg`` there.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext
from typing import Literal, Protocol, runtime_checkable

from device_drivers.status import Device, DeviceStatus

__all__ = [
    "GRAMS_PER_UNIT",
    "Scale",
    "ScaleErrorReason",
    "Weight",
    "WeightReading",
    "convert_weight",
]

ScaleErrorReason = Literal[
    "overload",
    "underload",
    "motion",
    "busy",
    "timeout",
    "syntax",
    "transmission",
    "logical",
    "garbage",
    "half_line",
    "io",
]
"""Keys of ``DeviceStatus.errors`` for scales: one counter per way a weighing can fail."""

GRAMS_PER_UNIT: dict[str, Decimal] = {
    "mg": Decimal("0.001"),
    "g": Decimal(1),
    "kg": Decimal(1000),
    "lb": Decimal("453.59237"),  # exact by the 1959 international yard and pound agreement
    "oz": Decimal("28.349523125"),  # 1/16 lb, so exact as well
}
"""Units a scale may report, by their exact size; a unit outside this table is refused
rather than guessed, because a misread unit is a thousandfold error."""

_EXACT_DIGITS = 60
"""Enough precision that a product of two weights' digits is never rounded; division is
the only operation that can be inexact, and it is trapped."""


@dataclass(frozen=True, slots=True)
class Weight:
    """An amount with its unit, such as a tare value; exact, never a float."""

    value: Decimal
    unit: str

    def to(self, unit: str, *, places: int | None = None) -> Weight:
        """The same weight in ``unit``; see :func:`convert_weight` for when ``places`` is needed."""
        return Weight(convert_weight(self.value, self.unit, unit, places=places), unit)


@dataclass(frozen=True, slots=True)
class WeightReading:
    """One weighing, as it will be recorded.

    ``net`` is what the scale showed; ``tare`` and ``gross`` are filled when the driver could
    learn the tare in force (``None`` otherwise, never a guessed zero). ``raw`` is the frame
    byte-for-byte, so a disputed weight can be audited against what the wire carried.
    ``stable`` is ``True`` for every reading from :meth:`Scale.read_stable`; a reading from
    :meth:`Scale.read_now` may be ``False`` and must not be recorded as a weight.
    """

    device_id: str
    net: Decimal
    gross: Decimal | None
    tare: Decimal | None
    unit: str
    stable: bool
    raw: bytes
    read_at: datetime.datetime

    def net_in(self, unit: str, *, places: int | None = None) -> Decimal:
        """The net weight in another unit (exact, or rounded to ``places`` when asked)."""
        return convert_weight(self.net, self.unit, unit, places=places)


def convert_weight(
    value: Decimal, from_unit: str, to_unit: str, *, places: int | None = None
) -> Decimal:
    """Convert exactly, or round to ``places`` decimals only when the caller asks for it.

    Towards smaller or metric units the result is always exact (1 lb is exactly
    0.45359237 kg). Towards pounds or ounces it usually is not (1 kg is 2.2046226218... lb),
    and then a silent rounding would hide a choice that belongs to the caller, so without
    ``places`` that raises :class:`ValueError`.
    """
    try:
        from_grams = GRAMS_PER_UNIT[from_unit]
        to_grams = GRAMS_PER_UNIT[to_unit]
    except KeyError as exc:
        raise ValueError(f"unknown weight unit {exc.args[0]!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a weight: {value}")
    with localcontext() as ctx:
        ctx.prec = _EXACT_DIGITS
        ctx.traps[Inexact] = True
        try:
            result = value * from_grams / to_grams
        except Inexact:
            if places is None:
                raise ValueError(
                    f"{value} {from_unit} has no exact value in {to_unit}; pass places"
                ) from None
            ctx.traps[Inexact] = False
            result = value * from_grams / to_grams
        if places is not None:
            ctx.traps[Inexact] = False
            result = result.quantize(Decimal(1).scaleb(-places))
    return result


@runtime_checkable
class Scale(Device, Protocol):
    """A weighing device that survives its device coming and going.

    Methods either return a trustworthy value or raise a subclass of
    :class:`~device_drivers.scales.errors.ScaleError` saying why not; nothing else escapes,
    so a station handles a scale with one ``except`` clause. Timeouts are in seconds and may
    be below one second.
    """

    def read_stable(self, timeout: float) -> WeightReading: ...

    def read_now(self) -> WeightReading: ...

    def zero(self, timeout: float = 5.0) -> None: ...

    def tare(self, timeout: float = 5.0) -> Weight: ...

    def clear_tare(self) -> None: ...

    def status(self) -> DeviceStatus: ...

    def close(self) -> None: ...
