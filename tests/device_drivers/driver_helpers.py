"""What the driver tests share: factories closed at teardown, the wire to a twin, and
bounded polling of a scale (ask again until it answers, or until the time is up).

Imported by name (``from tests.device_drivers.driver_helpers import ...``); the fixtures
themselves stay in each test file, next to the tests that use them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from device_drivers.scales import (
    Scale,
    ScaleError,
    ScaleTimeoutError,
    ScaleUnavailableError,
    WeightReading,
)
from tests.patience import patience_timeout


class Closable(Protocol):
    def close(self) -> None: ...


class ConnectingTwin(Protocol):
    def wait_connected(self, timeout: float) -> bool: ...


class TcpTwin(Protocol):
    @property
    def tcp_address(self) -> tuple[str, int] | None: ...


Made = TypeVar("Made", bound=Closable)
TwinT = TypeVar("TwinT", bound=Closable)


def closed_at_teardown(
    build: Callable[..., Made],
    defaults: Mapping[str, Any] | None = None,
    *,
    ready: Callable[[Made], object] | None = None,
) -> Iterator[Callable[..., Made]]:
    """For a fixture to ``yield from``: a factory, ``make(**overrides)``, that calls
    ``build(**defaults, **overrides)``; everything it made is closed at teardown.

    ``ready`` runs on each thing once it is recorded, so it is closed even if ``ready`` fails.
    """
    made: list[Made] = []

    def make(**overrides: Any) -> Made:
        thing = build(**{**(defaults or {}), **overrides})
        made.append(thing)
        if ready is not None:
            ready(thing)
        return thing

    yield make
    for thing in made:
        thing.close()


def twin_connected(twin: ConnectingTwin) -> None:
    """``ready`` for a twin that talks through a broker: connected within 10 s."""
    assert twin.wait_connected(patience_timeout(10))


@dataclass
class Wire(Generic[TwinT]):
    """A twin and the address a driver reaches it at (a by-id style link or tcp://host:port)."""

    twin: TwinT
    address: str
    kind: str


def tcp_url(twin: TcpTwin) -> str:
    """``tcp://host:port`` of a twin listening on loopback TCP."""
    assert twin.tcp_address is not None
    return "tcp://{}:{}".format(*twin.tcp_address)


def wired(kind: str, twin: TwinT, address: str) -> Iterator[Wire[TwinT]]:
    """For a fixture to ``yield from``: the twin at ``address``, closed at teardown."""
    yield Wire(twin, address, kind)
    twin.close()


def errors_of(scale: Scale) -> dict[str, int]:
    """The error counts of a scale that are not zero."""
    return {k: v for k, v in scale.status().errors.items() if v}


def wait_until(condition: Callable[[], bool], within: float = 3.0) -> bool:
    """Poll ``condition`` every 20 ms; False if it is still false after ``within`` seconds."""
    give_up_at = time.monotonic() + patience_timeout(within)
    while not condition():
        if time.monotonic() > give_up_at:
            return False
        time.sleep(0.02)
    return True


def read_until_it_works(
    scale: Scale,
    within: float,
    *,
    stable: float | None = None,
    retry_on: tuple[type[ScaleError], ...] = (ScaleError,),
    pause: float = 0.02,
) -> WeightReading:
    """Ask again (after ``pause``) while the scale raises one of ``retry_on``; once
    ``within`` seconds have gone, the last error is raised.

    Each try is ``read_now()``, or with ``stable`` a ``read_stable`` of that many seconds,
    never beyond the time that is left.
    """
    give_up_at = time.monotonic() + patience_timeout(within)
    while True:
        try:
            if stable is None:
                return scale.read_now()
            return scale.read_stable(max(min(stable, give_up_at - time.monotonic()), 0.0))
        except retry_on:
            if time.monotonic() > give_up_at:
                raise
            if pause:
                time.sleep(pause)


def weights_while_unplugged(scale: Scale, seconds: float) -> list[Decimal]:
    """Keep asking, every 50 ms for ``seconds``, a scale whose device is gone: the weights it
    gave, which must be none. Unavailable or timed out is what a gone device gives; any
    other error is raised."""
    seen: list[Decimal] = []
    give_up_at = time.monotonic() + seconds
    while time.monotonic() < give_up_at:
        with contextlib.suppress(ScaleUnavailableError, ScaleTimeoutError):
            seen.append(scale.read_now().net)
        time.sleep(0.05)
    return seen
