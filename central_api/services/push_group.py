"""Group commit on SQLite: pushes that arrive together are committed together.

SQLite lets one writer in at a time, and every commit waits for the disk
(``synchronous=FULL``: an acked push survives power loss). When eight sites push at
once, seven of them wait in line, each for the one before it to write *and* sync. Here
the pushes waiting in line are merged by one thread in one transaction, each in a
savepoint of its own, and synced by a single commit: the disk's wait is paid once per
group instead of once per push (``docs/performance.md``, "Group commit", has the
figures that decided it).

Nothing a push is promised changes:

* **exactly once**: every push is merged by :func:`~central_api.services.ingest.merge_push`
  under the same locks and checks as alone; a push that fails (a gap in its seqs, a
  refused projection) is rolled back to its savepoint and answered its own error, and
  the others go on;
* **durable before acked**: no push of a group is answered until the group's commit has
  returned; if that commit fails, every push of the group is answered the error and none
  was stored, so each edge sends its batch again;
* **one audit entry per push**, in its own savepoint, so it goes or stays with its push;
* **bounded waits**: a push waits at most ``wait_s`` to be taken into a group
  (:class:`~central_api.errors.WriteBusyError`, 503 + ``Retry-After``, otherwise); once
  taken it waits for the group's transaction, which holds at most ``max_group`` pushes
  and ``max_events`` events.

How: the first push to arrive finds nobody leading and leads: it takes the pushes
waiting (its own first, then in arrival order up to ``max_group`` and ``max_events``),
passes the engine's write gate (so other writers, an item's change, keep their turn),
merges them and commits. Then it hands the lead to the oldest push still waiting, if
any, and returns its own answer; the next leader does the same. A push alone on the line
is a group of one, merged without a savepoint: if it fails, its transaction is rolled
back instead.

PostgreSQL needs none of this: its transactions write in parallel and the server
already syncs the log for several commits at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine

from central_api.core.db import write_transaction
from central_api.errors import WriteBusyError

T = TypeVar("T")

MAX_GROUP = 64
"""Pushes merged in one transaction at most: the lock is held for the whole group, so a
bound on the group is a bound on what a writer behind it waits."""

MAX_GROUP_EVENTS = 10_000
"""Events merged in one transaction at most (two full batches): a group of large pushes
takes about as long as the pushes one after the other, so it stays short enough that the
last push of a group is answered well within an edge's request timeout. A push larger
than this is a group of its own."""


@dataclass(eq=False)
class _Job(Generic[T]):
    work: Callable[[Connection], T]
    weight: int = 1
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    value: T | None = None
    error: BaseException | None = None


class PushGroup:
    """Runs pushes to one SQLite engine, grouping those that wait together into one commit."""

    def __init__(
        self,
        engine: Engine,
        *,
        wait_s: float | None,
        retry_after_s: int = 1,
        max_group: int = MAX_GROUP,
        max_events: int = MAX_GROUP_EVENTS,
    ) -> None:
        self.engine = engine
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.max_group = max_group
        self.max_events = max_events
        self._mutex = threading.Lock()
        self._line: deque[_Job[object]] = deque()
        self._leading = False
        self.commits = 0
        """Transactions committed so far (each holding one or more pushes)."""
        self.merged = 0
        """Pushes merged so far."""

    def run(self, work: Callable[[Connection], T], *, events: int = 1) -> T:
        """Run ``work`` on a connection inside a write transaction shared with other
        pushes waiting now, each in its own savepoint; return its value once committed.

        ``work`` must not commit or answer anyone: it runs inside the group's
        transaction, and its value is returned only after that transaction committed.
        ``events`` (the push's size) counts towards the group's ``max_events``.
        """
        job: _Job[T] = _Job(work, weight=events)
        with self._mutex:
            self._line.append(job)  # type: ignore[arg-type]
            if not self._leading:
                self._leading = job.lead = True
        if not job.lead:
            self._wait_for_turn(job)
        if job.lead:
            self._lead()
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]

    def _wait_for_turn(self, job: _Job[T]) -> None:
        started = time.monotonic()
        if job.wake.wait(self.wait_s):
            return
        with self._mutex:
            if not job.wake.is_set() and job in self._line:
                self._line.remove(job)  # type: ignore[arg-type]
                raise WriteBusyError(
                    waited_s=time.monotonic() - started,
                    retry_after_s=self.retry_after_s,
                    queued=len(self._line),
                )
        job.wake.wait()  # already taken into a group (or made leader): that is bounded

    def _lead(self) -> None:
        with self._mutex:
            group = [self._line.popleft()]  # this leader's own push
            events = group[0].weight
            while (
                self._line
                and len(group) < self.max_group
                and events + self._line[0].weight <= self.max_events
            ):
                events += self._line[0].weight
                group.append(self._line.popleft())
        try:
            self._commit(group)
        finally:
            with self._mutex:
                for job in group:
                    job.done = True
                    if not job.lead:
                        job.wake.set()
                if self._line:
                    successor = self._line[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._leading = False

    def _commit(self, group: list[_Job[object]]) -> None:
        try:
            with self.engine.connect() as connection, write_transaction(connection):
                if len(group) == 1:
                    # A push alone needs no savepoint: if it fails, the transaction is
                    # rolled back (below) and the push answered its error, as when a
                    # group's savepoint is: two statements fewer for the common push.
                    group[0].value = group[0].work(connection)
                else:
                    for job in group:
                        savepoint = connection.begin_nested()
                        try:
                            job.value = job.work(connection)
                        except Exception as error:  # answered to that push alone
                            savepoint.rollback()
                            job.error = error
                        else:
                            savepoint.commit()
        except BaseException as error:
            # Not committed (busy, the disk, the database gone): nobody's push is stored.
            for job in group:
                if job.error is None:
                    job.value, job.error = None, error
            if not isinstance(error, Exception):
                raise
        else:
            self.commits += 1
            self.merged += len(group)
