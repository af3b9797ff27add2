"""Admission of pushes on the event loop: at most N in flight per process, the rest refused
in bounded time.

Every bounded wait of a push (the write gate, the push group's line, PostgreSQL's
``lock_timeout``, the pool's ``pool_timeout``) starts only once the push has a worker
thread and, for the pool, only once it asks for a connection. Before that, a push waits
unbounded: in anyio's thread pool (40 threads) behind other pushes, and then in the
connection pool's queue. The chain bench at twenty times the load found requests waiting
20 to 70 s although every wait central measures was bounded (``docs/performance.md``,
"Admission of pushes").

So the push route passes :class:`Admission` first, on the event loop, before its one
trip to a worker thread. At most ``limit`` pushes are inside; a push that finds them all
taken joins a line (first come, first served, a slot handed straight to the front of the
line on release, so nobody overtakes) and, if it is not let in within ``wait_s`` (the
write lock's own bound, ``JXC_CENTRAL_WRITE_WAIT_S``), leaves it with
:class:`~central_api.errors.WriteBusyError`: 503 with ``Retry-After``, the busy answer the
edge already honours. Waiting is on a future of the event loop, so a waiting push holds
neither a thread nor a connection, and reads keep the threads.

The line holds no future between waits, so one object serves every event loop the app is
run on (the test suite starts several on one app).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from central_api.errors import WriteBusyError

MAX_AUTOMATIC = 16
"""The automatic limit's ceiling: well under anyio's 40 worker threads, so reads, the
credential checks and the console always find a thread while pushes are at their limit."""


def automatic_limit(engine: Engine) -> int:
    """Pushes let in at once when the setting leaves it to central: the connection pool's
    capacity (its size and overflow), at most :data:`MAX_AUTOMATIC`. Below the pool's
    capacity, an admitted push never waits in the pool's queue behind other pushes."""
    pool = engine.pool
    if isinstance(pool, QueuePool):
        overflow = pool._max_overflow
        if overflow >= 0:
            return max(1, min(pool.size() + overflow, MAX_AUTOMATIC))
    return MAX_AUTOMATIC


class Admission:
    """At most ``limit`` holders at once; the others in line, refused after ``wait_s``."""

    def __init__(self, *, limit: int, wait_s: float | None, retry_after_s: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"an admission limit is at least 1, not {limit}")
        self.limit = limit
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.inside = 0
        self._line: deque[asyncio.Future[None]] = deque()
        self.refused = 0
        """Pushes refused as busy so far (also counted in the app's metrics)."""

    @property
    def waiting(self) -> int:
        """How many are in line now (not counting those inside)."""
        return len(self._line)

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a slot for the block; WriteBusyError if none comes within ``wait_s``."""
        await self._enter()
        try:
            yield
        finally:
            self._leave()

    async def _enter(self) -> None:
        if self.inside < self.limit and not self._line:
            self.inside += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._line.append(turn)
        ahead = len(self._line)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.wait_s):
                await asyncio.shield(turn)
        except TimeoutError:
            if turn.done():  # handed a slot just as the wait ran out: it is ours
                return
            self._line.remove(turn)
            self.refused += 1
            raise WriteBusyError(
                waited_s=time.monotonic() - started,
                retry_after_s=self.retry_after_s,
                queued=ahead,
            ) from None
        except BaseException:
            # Cancelled (the client went away): give back a slot handed over meanwhile.
            if turn.done():
                self._leave()
            else:
                self._line.remove(turn)
            raise

    def _leave(self) -> None:
        # A slot passes straight to the front of the line: ``inside`` stays as it is.
        while self._line:
            turn = self._line.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.inside -= 1
