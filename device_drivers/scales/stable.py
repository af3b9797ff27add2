"""When a scale's weight counts as still: the rules every scale driver shares.

A station records a weight only once it holds still, and the drivers must agree on what
that means, whatever their protocol: the device's own stable flag (``device`` mode), or in
``consecutive`` mode also a run of readings in a row within one division of each other.
That run is :class:`StableRun`. The drivers that ask for readings (MT-SICS, Toledo 8217,
Modbus) also share the loop around it, :class:`StableReader`: poll, retry what waiting can
cure, stop at once on what it cannot, and give up at the deadline saying what was seen last.
An MQTT scale, whose readings arrive on their own, keeps a :class:`StableRun` and no loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from device_drivers.scales.errors import (
    ScaleError,
    ScaleMotionError,
    ScaleTimeoutError,
    ScaleUnavailableError,
)

__all__ = [
    "PollBudget",
    "PollCutShortError",
    "StableMode",
    "StableReader",
    "StableRun",
    "last_digit",
]

StableMode = Literal["device", "consecutive"]
"""How a driver's ``read_stable`` decides a weight holds still.

``device`` takes the first reading the scale itself flags stable. ``consecutive`` also wants
``stable_readings`` flagged readings in a row within one division of each other, for scales
whose motion filter is set too eager (a pallet jack still rolling off reads "stable"), and
is the only choice for a device that has no stable flag at all."""

_T = TypeVar("_T")


def last_digit(value: Decimal) -> Decimal:
    """One unit in the last printed place: what the scale displays is its division."""
    exponent = value.as_tuple().exponent
    return Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)


class StableRun(Generic[_T]):
    """The readings in a row that agree to within one division, oldest first.

    ``division`` is the scale's ``d``; ``None`` takes it from the newest reading's printed
    decimals. ``continues(previous, new)`` says whether a new reading belongs to the same
    weighing as the one before it (same unit, same tare state, no long gap); one that does
    not starts the run afresh. Not thread-safe: the owner guards it.
    """

    def __init__(
        self,
        mode: StableMode,
        readings: int,
        division: Decimal | None = None,
        *,
        continues: Callable[[_T, _T], bool] | None = None,
    ) -> None:
        self._mode = mode
        self._readings = readings
        self._division = division
        self._continues = continues
        self._run: list[tuple[_T, Decimal]] = []

    def clear(self) -> None:
        """Forget the run: what follows a problem or a change is a new weighing."""
        self._run.clear()

    def add(self, item: _T, value: Decimal, *, stable: bool | None = True) -> bool:
        """Take one reading of ``value``; whether the weight now holds still.

        ``stable`` is the device's own flag: ``False`` breaks the run, ``None`` (a device
        without a flag) leaves the decision to the run alone.
        """
        run = self._run
        if stable is False:
            run.clear()
            return False
        if self._mode == "device":
            return True
        if run and self._continues is not None and not self._continues(run[-1][0], item):
            run.clear()
        run.append((item, value))
        division = self._division or last_digit(value)
        while max(v for _, v in run) - min(v for _, v in run) > division:
            run.pop(0)
        if len(run) > self._readings:
            run.pop(0)
        return len(run) >= self._readings

    def ends_with(self, item: _T) -> bool:
        """Whether a complete run ends with ``item`` (in ``device`` mode: always)."""
        if self._mode == "device":
            return True
        return len(self._run) >= self._readings and self._run[-1][0] is item


class PollCutShortError(Exception):
    """A poll's timeout that is no evidence of a silent device: the caller's deadline, not
    the device, cut the wait short. The stable loop stops on it instead of counting it."""

    def __init__(self, error: ScaleTimeoutError) -> None:
        super().__init__(error.detail)
        self.error = error


class PollBudget:
    """How long each poll of one stable read may wait for its reply, and whether its
    silence counts as a timeout.

    Each poll waits a full reply timeout, or what is left before the deadline if that is
    less. A poll cut short that way proves nothing about the device, unless it is the only
    poll there is: then it is raised as :class:`PollCutShortError` instead of being counted.
    """

    def __init__(self, deadline: float, reply_timeout: float) -> None:
        self._deadline = deadline
        self._reply_timeout = reply_timeout
        self._first = True

    def poll(self, weigh: Callable[[float, bool], _T]) -> _T:
        """``weigh(wait, counted)``; an uncounted timeout becomes :class:`PollCutShortError`."""
        wait = min(self._reply_timeout, max(self._deadline - time.monotonic(), 0.0))
        counted, self._first = self._first or wait >= self._reply_timeout, False
        try:
            return weigh(wait, counted)
        except ScaleTimeoutError as exc:
            if counted:
                raise
            raise PollCutShortError(exc) from None


class StableReader:
    """The polling loop of a stable read, with one driver's rules for what to retry.

    ``retry`` are the errors waiting may cure (motion, a busy device, a damaged or missing
    reply, a lost link): each breaks the run and the loop polls again; any other scale
    error (overload, a refused command), or one of those whose class says it is not
    ``retryable``, ends the wait at once, since waiting does not cure it. Once the driver
    is closing, a retryable error of a ``closing_raises`` class is raised as it is.
    """

    def __init__(
        self,
        device_id: str,
        *,
        poll_interval: float,
        closing: threading.Event,
        retry: tuple[type[ScaleError], ...],
        closing_raises: tuple[type[ScaleError], ...] = (ScaleUnavailableError,),
    ) -> None:
        self._device_id = device_id
        self._poll_interval = poll_interval
        self._closing = closing
        self._retry = retry
        self._closing_raises = closing_raises

    def read(
        self,
        poll: Callable[[], _T],
        settled: Callable[[_T], bool],
        *,
        run: StableRun[Any],
        deadline: float,
        motion_detail: str,
    ) -> _T:
        """Poll until ``settled`` accepts a reading, or raise why not by ``deadline``.

        ``run`` is cleared after every problem; ``motion_detail`` is the message when the
        time ran out on readings that never held still (or on none at all).
        """
        last_problem: ScaleError | None = None
        seen = False
        while True:
            try:
                polled = poll()
            except PollCutShortError as cut:
                # What was seen before stands; if nothing was, the scale did not answer.
                if not seen:
                    last_problem = cut.error
                break
            except self._retry as exc:
                if not exc.retryable:
                    raise  # a subclass that waiting does not cure (a port refusing 7E1)
                if self._closing.is_set() and isinstance(exc, self._closing_raises):
                    raise
                last_problem, seen = exc, True
                run.clear()
            else:
                last_problem, seen = None, True
                if settled(polled):
                    return polled
            if not self.pause(deadline):
                break
        if self._closing.is_set():
            raise ScaleUnavailableError(self._device_id, "closed")
        if last_problem is None or isinstance(last_problem, ScaleMotionError):
            raise ScaleMotionError(self._device_id, motion_detail)
        raise last_problem

    def pause(self, deadline: float) -> bool:
        """Wait one poll interval (less if the deadline is nearer); ``False`` when there is
        no time left or the driver is closing, so the caller stops polling."""
        pause = min(self._poll_interval, deadline - time.monotonic())
        return not (pause <= 0 or self._closing.wait(pause))
