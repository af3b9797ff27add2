"""The engine under a serial scale twin: one thread, one ``select``, a platform, faults.

The MT-SICS and Toledo 8217 twins behave like the single-threaded indicators they imitate:
one loop answers every request in order, so a slow or held-back reply delays the ones after
it. They also fail alike: a reply swallowed, garbled, cut or held back, a load that swings
or is forced over or under range, and the device unplugged and plugged back in (by itself
after a while, or when told). That machinery is the same whatever the protocol, so it lives
here; a twin adds what it watches, how it reads and answers, and how it plugs in.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from simulators.closing import ClosedOnExit
from simulators.load import PlatformLoad
from simulators.pty_port import PtyPlug

__all__ = ["MAX_PENDING_OUTPUT", "SerialScaleTwin", "buffer_output"]

MAX_PENDING_OUTPUT = 65536
"""What a device buffers for a reader that does not read; a UART drops the rest."""


def buffer_output(outbox: bytearray, data: bytes) -> None:
    """Queue ``data`` for the wire, dropping what does not fit, as a UART does."""
    room = MAX_PENDING_OUTPUT - len(outbox)
    outbox += data[: max(room, 0)]


class SerialScaleTwin(ClosedOnExit):
    """A scale served by its own loop thread, with wire faults and unplug/replug.

    Subclasses call ``super().__init__(platform, link)`` first, then :meth:`_start_loop` once
    their state is ready, and provide :meth:`_plug_in`, :meth:`_unplug`, :meth:`_due`,
    :meth:`_watched` and :meth:`_ready`; all of those run with :attr:`_lock` held.
    """

    def __init__(self, platform: PlatformLoad, link: Path | None) -> None:
        self._platform = platform
        self._pty = PtyPlug(link)
        """Where the device's serial adapter plugs in (a twin without a pty never plugs)."""
        self._lock = threading.RLock()
        self._faults: deque[str] = deque()
        """Faults for the next replies, one each, in order."""
        self._mute = False
        self._delay = 0.0
        self._actions: list[Callable[[], None]] = []
        self._reconnect_at: float | None = None
        self._connected = False
        self._stopping = False

    def _start_loop(self, name: str) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        try:
            self._plug_in()
        except BaseException:
            self._unplug()
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- what a test or an operator can do ------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def device_path(self) -> str | None:
        """The pty a driver opens (the latest one after a replug; ``None`` without a pty)."""
        return self._pty.device_path

    @property
    def net(self) -> Decimal:
        """The net weight the display shows when the load holds still."""
        with self._lock:
            return self._platform.shown(self._platform.net)

    def wobble(self, seconds: float, amplitude: Decimal | None = None) -> None:
        """Make the load swing for ``seconds``, then hold still at its value."""
        with self._lock:
            self._platform.wobble(seconds, amplitude)
        self._wake()

    def overload(self) -> None:
        """Report overload (over capacity) whatever the load, until :meth:`clear_faults`."""
        self._force("overload")

    def underload(self) -> None:
        """Report underload (under zero) whatever the load, until :meth:`clear_faults`."""
        self._force("underload")

    def clear_faults(self) -> None:
        """Back to a healthy device; what is on the platform (and its zero and tare) stays."""
        with self._lock:
            self._platform.force(None)
            self._clear_wire_faults()
            self._platform.hold_still()
        self._wake()

    def no_reply(self, count: int | None = 1) -> None:
        """Swallow the next ``count`` requests without a word (``None``: until cleared)."""
        if count is None:
            with self._lock:
                self._mute = True
            return
        self._queue_fault("no_reply", count)

    def garble_replies(self, count: int = 1) -> None:
        """Replace the next ``count`` replies by line noise, as a bad cable does."""
        self._queue_fault("garbage", count)

    def cut_replies(self, count: int = 1) -> None:
        """Send only the first half of the next ``count`` replies, and no terminator."""
        self._queue_fault("half", count)

    def set_delay(self, seconds: float) -> None:
        """Hold every reply back this long (a slow bridge, a busy indicator)."""
        with self._lock:
            self._delay = max(seconds, 0.0)

    def disconnect(self, seconds: float | None = None) -> None:
        """Vanish: close the port (and remove its link). With ``seconds`` the device comes
        back by itself after that long, on a new pty behind the same link; otherwise call
        :meth:`reconnect`.
        """

        def unplug() -> None:
            self._unplug()
            self._reconnect_at = None if seconds is None else time.monotonic() + seconds

        self._on_loop(unplug)

    def reconnect(self) -> None:
        """Come back now (a no-op when connected)."""

        def plug_in() -> None:
            self._reconnect_at = None
            if not self._connected:
                self._plug_in()

        self._on_loop(plug_in)

    def close(self) -> None:
        """Stop the twin for good and remove the link if it is still ours."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            self._unplug()
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- for subclasses ---------------------------------------------------------------------

    def _plug_in(self) -> None:
        """Open the device's ports and set :attr:`_connected`."""
        raise NotImplementedError

    def _unplug(self) -> None:
        """Close whatever :meth:`_plug_in` opened (also a half-done plug-in); clear
        :attr:`_connected`."""
        raise NotImplementedError

    def _due(self, now: float) -> list[float]:
        """Do what the device has due now; when it next has something due."""
        raise NotImplementedError

    def _watched(self) -> tuple[list[int], list[int]]:
        """The descriptors to wait on: to read, and to write."""
        raise NotImplementedError

    def _ready(self, readable: list[int], writable: list[int]) -> None:
        """Serve the descriptors ``select`` found ready."""
        raise NotImplementedError

    def _force(self, state: str) -> None:
        with self._lock:
            self._platform.force(state)

    def _queue_fault(self, fault: str, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def _next_fault(self) -> str | None:
        """The fault for this request (``None``: none); each fault is used once."""
        return self._faults.popleft() if self._faults else None

    def _clear_wire_faults(self) -> None:
        self._faults.clear()
        self._mute = False
        self._delay = 0.0

    def _send_later(self, transit: deque[tuple[float, bytes]], reply: bytes, now: float) -> None:
        """Put a reply on a link that takes the configured delay; order is kept."""
        arrives_at = now + self._delay
        if transit:
            arrives_at = max(arrives_at, transit[-1][0])
        transit.append((arrives_at, reply))

    @staticmethod
    def _deliver(
        transit: deque[tuple[float, bytes]], now: float, emit: Callable[[bytes], None]
    ) -> float | None:
        """Hand on every reply that has arrived; when the next one will, if any is left."""
        while transit:
            arrives_at, reply = transit[0]
            if arrives_at > now:
                return arrives_at
            transit.popleft()
            emit(reply)
        return None

    def _on_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the loop thread between two ``select`` calls, and wait for it.

        Descriptors are only ever closed there: one closed while ``select`` holds it stays
        alive in the kernel until ``select`` returns, and a listener closed that way still
        accepts a connection, which is not what an unplugged device does.
        """
        done = threading.Event()
        failures: list[BaseException] = []

        def run() -> None:
            try:
                action()
            except BaseException as exc:  # handed to the caller below
                failures.append(exc)
            finally:
                done.set()

        with self._lock:
            if self._stopping:
                raise ValueError("the scale twin is closed")
            self._actions.append(run)
        self._wake()
        if not done.wait(timeout=5):
            raise TimeoutError("the scale twin's loop did not answer")
        if failures:
            raise failures[0]

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                actions, self._actions = self._actions, []
                for action in actions:
                    action()
                wait = self._fire_due(time.monotonic())
                readers, writers = self._watched()
            try:
                readable, writable, _ = select.select([self._wake_r, *readers], writers, [], wait)
            except (OSError, ValueError):
                continue  # not expected (descriptors close only on this thread); look again
            with self._lock:
                if self._stopping:
                    return
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                self._ready(readable, writable)

    def _fire_due(self, now: float) -> float | None:
        """Do whatever is due now; return how long the loop may sleep."""
        wake_at: list[float] = []
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            if not self._connected:
                try:
                    self._plug_in()
                except OSError:  # no pty or port to be had just now; try again shortly
                    self._unplug()
                    self._reconnect_at = now + 0.1
        if self._reconnect_at is not None:
            wake_at.append(self._reconnect_at)
        wake_at += self._due(now)
        return max(min(wake_at) - now, 0.0) if wake_at else None
