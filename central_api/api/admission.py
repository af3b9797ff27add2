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

**One line per event loop.** The futures a line hands slots to belong to one event loop
and may be resolved only from it, so each running loop gets a line of its own (made on
its first push, forgotten with the loop): ``limit`` pushes inside *per loop*. A served
process runs one loop, so that is the limit per process; the test suite runs several
loops on one app (each ``TestClient`` its own, some at once on other threads), and a line
shared between them would count one loop's pushes against another's and wake a waiter
from the wrong thread.

The automatic limit is computed from the connection pool's settings as central gives
them to the engine (``JXC_CENTRAL_POOL_SIZE``, ``JXC_CENTRAL_POOL_MAX_OVERFLOW``), not read
back from the pool: SQLAlchemy keeps a pool's overflow bound in a private attribute.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from central_api.errors import WriteBusyError

MAX_AUTOMATIC = 16
"""The automatic limit's ceiling: well under anyio's 40 worker threads, so reads, the
credential checks and the console always find a thread while pushes are at their limit."""

POSTGRESQL_AUTOMATIC = 3
"""The automatic limit on PostgreSQL, per process.

A process runs Python one thread at a time (the GIL), and a small push spends most of
its time there (about four fifths with the database over loopback): a second and a third
push in flight fill the first one's waits for the database; more add little, they race
for the GIL, which is not handed over first come, first served, so an unlucky push waits
behind several that came after it. Here they wait in this line, in arrival order,
instead. Measured in one run (``bench/requests.py --pushes-in-flight 15``, one process):
eight sites pushing one event each, p99 54 ms with 3 against 81 ms with 15 (the bare
floor's 56); eight sites pushing 100 events each, 5,042 against 6,179 events/s, p99 228
against 265 ms (``docs/performance.md``, "Three pushes in flight"). A database across a
network makes each push wait longer: raise ``JXC_CENTRAL_MAX_PUSHES_IN_FLIGHT`` to about
one plus a push's time waiting over its time computing, and for bulk catch-up over
latency."""


def automatic_limit(*, pool_size: int, max_overflow: int, dialect: str = "sqlite") -> int:
    """Pushes let in at once when the setting leaves it to central.

    On SQLite, the connection pool's capacity (``pool_size`` connections kept plus
    ``max_overflow`` opened on demand, as central configures its engine), at most
    :data:`MAX_AUTOMATIC`: the pushes waiting for the write lock are what a group commit
    commits together, so they should be waiting there, not here. Below the pool's
    capacity, an admitted push never waits in the pool's queue behind other pushes. A
    negative overflow (SQLAlchemy's "no bound") leaves only the ceiling. On PostgreSQL,
    :data:`POSTGRESQL_AUTOMATIC`, within the same capacity.
    """
    capacity = MAX_AUTOMATIC if max_overflow < 0 else pool_size + max_overflow
    ceiling = POSTGRESQL_AUTOMATIC if dialect == "postgresql" else MAX_AUTOMATIC
    return max(1, min(capacity, ceiling))


class _Line:
    """One event loop's share: how many are inside, and the turns of those waiting.

    Touched only from its own loop's thread, so it needs no lock."""

    __slots__ = ("inside", "turns")

    def __init__(self) -> None:
        self.inside = 0
        self.turns: deque[asyncio.Future[None]] = deque()


class Admission:
    """At most ``limit`` holders at once per event loop; the others in line, refused after
    ``wait_s``."""

    def __init__(self, *, limit: int, wait_s: float | None, retry_after_s: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"an admission limit is at least 1, not {limit}")
        self.limit = limit
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self._lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Line] = (
            weakref.WeakKeyDictionary()
        )
        self._mutex = threading.Lock()
        """Guards ``_lines`` (loops on other threads add theirs) and ``refused``."""
        self.refused = 0
        """Pushes refused as busy so far, on every loop (also counted in the app's metrics)."""

    def _snapshot(self) -> list[_Line]:
        with self._mutex:
            return list(self._lines.values())

    @property
    def inside(self) -> int:
        """How many hold a slot now, on every loop (a reading for tests and diagnostics)."""
        return sum(line.inside for line in self._snapshot())

    @property
    def waiting(self) -> int:
        """How many are in line now, on every loop (not counting those inside)."""
        return sum(len(line.turns) for line in self._snapshot())

    def _line(self) -> _Line:
        """The running loop's line, made on its first push."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            line = self._lines.get(loop)
            if line is None:
                line = self._lines[loop] = _Line()
            return line

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold a slot for the block; WriteBusyError if none comes within ``wait_s``."""
        line = self._line()
        await self._enter(line)
        try:
            yield
        finally:
            self._leave(line)

    async def _enter(self, line: _Line) -> None:
        if line.inside < self.limit and not line.turns:
            line.inside += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.turns.append(turn)
        ahead = len(line.turns)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.wait_s):
                await asyncio.shield(turn)
        except TimeoutError:
            if turn.done():  # handed a slot just as the wait ran out: it is ours
                return
            line.turns.remove(turn)
            with self._mutex:
                self.refused += 1
            raise WriteBusyError(
                waited_s=time.monotonic() - started,
                retry_after_s=self.retry_after_s,
                queued=ahead,
            ) from None
        except BaseException:
            # Cancelled (the client went away): give back a slot handed over meanwhile.
            if turn.done():
                self._leave(line)
            else:
                line.turns.remove(turn)
            raise

    @staticmethod
    def _leave(line: _Line) -> None:
        # A slot passes straight to the front of the line: ``inside`` stays as it is.
        while line.turns:
            turn = line.turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        line.inside -= 1
