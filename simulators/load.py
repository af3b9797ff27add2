"""The load on a simulated weighing platform, whatever protocol the twin speaks.

Every scale twin (MT-SICS, Toledo 8217, Modbus, MQTT) needs the same physical model under
its protocol: a gross load on the load cell, a zero and a tare, a load that swings for a
while before it settles (a box dropped on the platform), and a platform forced into a state
whatever its load (overload, underload, or a protocol's own, such as MT-SICS "busy"). The
model is written once here so that the twins differ only where the devices do: in how they
encode a reading, where their limits lie and what they refuse. The display units a scale
may be set to (:data:`UNITS`) are physics too, and live here with the load.

The swing never shows the settled value: each reading during it is off by one of
:data:`WOBBLE_PATTERN`'s offsets, so a driver that takes a moving value for the final one is
caught by a test rather than saved by luck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

__all__ = ["UNITS", "WOBBLE_PATTERN", "PlatformLoad"]

UNITS: dict[str, Decimal] = {
    "mg": Decimal("0.001"),
    "g": Decimal(1),
    "kg": Decimal(1000),
    "lb": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}
"""Grams per unit; pound and ounce are exact by definition."""

WOBBLE_PATTERN = (9, -7, 5, -8, 6, -4, 7, -6, 3, -5)
"""Offsets (tenths of the amplitude) a swinging load shows in turn: never the settled value."""


class PlatformLoad:
    """Load, zero, tare, swing and forced state of one platform; safe to share across threads.

    ``division`` is the display's step (``0.01`` for two decimals); a swing's amplitude is 20
    divisions unless :meth:`wobble` says otherwise. Times come from ``clock`` (monotonic
    seconds) unless a caller passes its own ``now``, so a twin on an asyncio loop can use the
    loop's clock. Values are in whatever unit the twin keeps them in.
    """

    def __init__(
        self,
        division: Decimal,
        load: Decimal = Decimal(0),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.division = division
        self._clock = clock
        self._lock = threading.RLock()
        self._load = load
        self._zero = Decimal(0)
        self._tare = Decimal(0)
        self._settle_at = 0.0
        self._amplitude = division * 20
        self._step = 0
        self._forced: str | None = None

    # -- the state, read -----------------------------------------------------------------

    @property
    def load(self) -> Decimal:
        """What is on the load cell, before zero and tare."""
        with self._lock:
            return self._load

    @property
    def zero(self) -> Decimal:
        with self._lock:
            return self._zero

    @property
    def tare(self) -> Decimal:
        with self._lock:
            return self._tare

    @property
    def gross(self) -> Decimal:
        """The load above zero."""
        with self._lock:
            return self._load - self._zero

    @property
    def net(self) -> Decimal:
        """The load above zero and tare, as it is when the platform holds still."""
        with self._lock:
            return self._load - self._zero - self._tare

    @property
    def settle_at(self) -> float:
        """When the current swing ends (in the past when the load holds still)."""
        with self._lock:
            return self._settle_at

    @property
    def forced(self) -> str | None:
        """The state forced by :meth:`force`, or ``None``."""
        with self._lock:
            return self._forced

    def moving(self, now: float | None = None) -> bool:
        with self._lock:
            return self._now(now) < self._settle_at

    def shown(self, value: Decimal) -> Decimal:
        """``value`` rounded to the display's step, never ``-0`` (no display shows that)."""
        shown = value.quantize(self.division)
        return shown.copy_abs() if shown == 0 else shown

    def swing(self, now: float | None = None) -> tuple[Decimal, bool]:
        """How far off its value the load shows now, and whether it moves at all.

        Each call while the load moves takes the next offset of the pattern, as each look at
        a swinging display sees another value; a still load shows no offset.
        """
        with self._lock:
            if self._now(now) >= self._settle_at:
                return Decimal(0), False
            step = WOBBLE_PATTERN[self._step % len(WOBBLE_PATTERN)]
            self._step += 1
            return self._amplitude * step / 10, True

    def reading(self, now: float | None = None) -> tuple[Decimal, bool]:
        """The net value the display shows now (not yet rounded), and the motion flag."""
        with self._lock:
            offset, moving = self.swing(now)
            net = self._load - self._zero - self._tare
            return (net + offset if moving else net), moving

    def over(self, limit: Decimal) -> bool:
        """Overload: forced so, or a gross load beyond ``limit``."""
        with self._lock:
            return self._forced == "overload" or self._load - self._zero > limit

    def under(self, limit: Decimal) -> bool:
        """Underload: forced so, or a gross load below ``limit``."""
        with self._lock:
            return self._forced == "underload" or self._load - self._zero < limit

    # -- the state, changed ----------------------------------------------------------------

    def put(self, value: Decimal, *, settle: float = 0.0, now: float | None = None) -> None:
        """A new gross load; with ``settle`` it swings that many seconds first."""
        with self._lock:
            self._load = value
            if settle > 0:
                self._settle_at = self._now(now) + settle

    def wobble(
        self, seconds: float, amplitude: Decimal | None = None, *, now: float | None = None
    ) -> None:
        """Swing for ``seconds`` (by ``amplitude``, else as before), then hold still."""
        with self._lock:
            self._settle_at = self._now(now) + seconds
            if amplitude is not None:
                self._amplitude = amplitude

    def hold_still(self) -> None:
        """End a swing now."""
        with self._lock:
            self._settle_at = 0.0

    def force(self, state: str | None) -> None:
        """Report ``state`` whatever the load (``None``: the load decides again)."""
        with self._lock:
            self._forced = state

    def zero_here(self) -> None:
        """Take the load as the new zero; as on a keypad, that also drops the tare."""
        with self._lock:
            self._zero = self._load
            self._tare = Decimal(0)

    def set_tare(self, value: Decimal) -> None:
        with self._lock:
            self._tare = value

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now
