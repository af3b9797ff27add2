"""The change feed: every master-data write, numbered so that an edge can follow it.

Writing
-------
A service that changes master data opens :func:`feed_writer` inside its write
transaction, *before* it reads what it is about to change, and appends one change per
entity it writes. The versions come from the single row of ``feed_counter``:

1. :func:`feed_writer` locks that row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite
   :func:`~central_api.core.db.write_transaction` has already taken the database's write lock
   with ``BEGIN IMMEDIATE``). Every feed writer, in every central process, queues here.
2. Each :meth:`FeedWriter.append` takes the next version and queues the change row.
3. On leaving the block the change rows are inserted and the counter is moved to the last
   version handed out, still inside the caller's transaction, which then commits and
   releases the lock.

Why a locked counter and not a sequence (or autoincrement)
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
An edge reads "everything after version N" and then stores its cursor at the last version
it saw. That is only correct if a reader that has seen version ``v`` can never later find
a committed change below ``v``. A PostgreSQL sequence hands out numbers when asked, not
when the transaction commits: writer A takes 7, writer B takes 8 and commits first, an
edge reads 8 and moves its cursor past 7, then A commits 7 and the edge never sees it.
With several central processes on one database this happens under ordinary load.

Holding the counter row's lock from before the first version is taken until commit makes
the writers' transactions follow each other: B cannot take 8 until A has committed 7
(PostgreSQL makes a commit visible before it releases the transaction's locks). So
versions become visible in order, and because the counter is updated in the same
transaction, a rolled-back write gives its versions back: the feed has no gaps at all.
The price is that master-data writes are serialised, which they can afford; ledger
pushes never touch this row.

Taking the lock *first* also makes the writer's own reads exact: with every catalog
writer queued on the same row, nothing can change between its checks ("is this barcode
free?") and its writes. Under READ COMMITTED each statement after the lock sees all
that the previous holder committed.

Reading
-------
:func:`changes_for_site` returns one page after a cursor: the site's own changes and the
ones for every site (``site_id`` NULL), oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Update, bindparam, insert, select, union_all, update

from central_api.core import driver
from central_api.errors import FeedCursorAheadError
from central_api.models.feed import change_feed, feed_counter
from central_api.services.master_text import sendable
from jxc.feed import ChangeOp, FeedEntity

FEED_COUNTER_ID = 1
MAX_PAGE = 5000
"""The largest page a site may ask for."""


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One change of the feed: an entity's full new state, or its tombstone (no data)."""

    version: int
    entity: FeedEntity
    key: str
    op: ChangeOp
    data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class FeedPage:
    """One page of a site's feed, oldest change first."""

    site_id: str
    changes: list[FeedChange]
    next_cursor: int
    """The version of the page's last change, or the cursor asked with if none."""
    has_more: bool
    """Whether another page is already waiting."""


class FeedCounterMissingError(RuntimeError):
    """The ``feed_counter`` row is gone: the schema was not made by the migrations."""


@dataclass(slots=True)
class FeedWriter:
    """Hands out the versions of one write transaction; made by :func:`feed_writer`."""

    connection: Connection
    changed_at: datetime
    first: int
    """The counter's value when the lock was taken; the first change gets ``first + 1``."""
    last: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    def append(
        self,
        *,
        entity: FeedEntity,
        key: str,
        op: ChangeOp,
        data: dict[str, Any] | None,
        site_id: str | None = None,
    ) -> int:
        """Queue one change (``data`` is the entity's full new state, None for a delete)
        and return its version, to store on the entity's row."""
        if (op is ChangeOp.DELETE) != (data is None):
            raise ValueError(f"{op} of {entity} {key!r}: an upsert has data, a delete none")
        self.last += 1
        self.rows.append(
            {
                "version": self.last,
                "site_id": site_id,
                "entity": entity.value,
                "entity_key": key,
                "op": op.value,
                "data": None if data is None else _json(data),
                "changed_at": self.changed_at,
            }
        )
        return self.last

    def _flush(self) -> None:
        if not self.rows:
            return
        # At the driver (central_api.core.driver): every item, price and document change
        # runs these, and SQLAlchemy's execution of each cost more than the database's.
        connection, dialect = self.connection, self.connection.dialect
        move = {"counter_id": FEED_COUNTER_ID, "was": self.first, "now": self.last}
        count = len(self.rows)
        if dialect.name == "postgresql" and count <= _MOST_IN_ONE:
            # One statement, one round trip: the changes inserted in a WITH of the
            # counter's move (PostgreSQL runs a WITH's INSERT whether or not it is read).
            given = dict(move)
            for index, row in enumerate(self.rows):
                given.update({f"{name}_{index}": value for name, value in row.items()})
            moved = driver.run(connection, driver.prepared(_insert_and_move(count), dialect), given)
        else:
            insert_changes = driver.prepared(_INSERT_CHANGES, dialect)
            if count == 1:
                driver.run(connection, insert_changes, self.rows[0])
            else:
                driver.run_many(connection, insert_changes, self.rows)
            moved = driver.run(connection, driver.prepared(_MOVE_COUNTER, dialect), move)
        if moved != 1:
            # Only possible if someone wrote the counter without its lock.
            raise RuntimeError(f"feed_counter moved from {self.first} while locked")
        self.rows = []
        self.first = self.last


# Built once with bound parameters (every item, price or document change takes the
# counter): building them per call cost more than running them (docs/performance.md).
_INSERT_CHANGES = insert(change_feed).values(
    {column.name: bindparam(column.name, type_=column.type) for column in change_feed.c}
)
_MOVE_COUNTER = (
    update(feed_counter)
    .where(feed_counter.c.id == bindparam("counter_id"), feed_counter.c.version == bindparam("was"))
    .values(version=bindparam("now"))
)
_MOST_IN_ONE = 16
"""The most changes :meth:`FeedWriter._flush` writes with the counter's move in one
statement on PostgreSQL (a statement per count, each kept prepared); more go as two."""

_INSERT_AND_MOVE: dict[int, Update] = {}


def _insert_and_move(count: int) -> Update:
    """``WITH changes AS (INSERT ... VALUES <count rows>) UPDATE feed_counter ...``: the
    rows' parameters are ``<column>_<index>``; made once per count and kept."""
    found = _INSERT_AND_MOVE.get(count)
    if found is None:
        rows = [
            {
                column.name: bindparam(f"{column.name}_{index}", type_=column.type)
                for column in change_feed.c
            }
            for index in range(count)
        ]
        found = _INSERT_AND_MOVE[count] = _MOVE_COUNTER.add_cte(
            insert(change_feed).values(rows).cte("changes")
        )
    return found


_LOCK_COUNTER = (
    select(feed_counter.c.version)
    .where(feed_counter.c.id == bindparam("counter_id"))
    .with_for_update()  # SQLite has no FOR UPDATE; BEGIN IMMEDIATE already locked it
)


@contextmanager
def feed_writer(connection: Connection, *, changed_at: datetime) -> Iterator[FeedWriter]:
    """Lock the feed counter and collect changes; they are written when the block ends.

    Must run inside a write transaction (:func:`~central_api.core.db.write_transaction`) that
    also makes the changes' table writes, and should be entered before the caller reads
    the rows it will change (see the module docstring). If the block raises, nothing is
    written and the caller's transaction is expected to roll back.
    """
    if not connection.in_transaction():
        raise RuntimeError("feed_writer needs the caller's write transaction")
    found = driver.rows(
        connection,
        driver.prepared(_LOCK_COUNTER, connection.dialect),
        {"counter_id": FEED_COUNTER_ID},
    )
    current = found[0][0] if found else None
    if current is None:
        raise FeedCounterMissingError(
            "table feed_counter has no row: the database was not set up by `jxc central migrate`"
        )
    writer = FeedWriter(connection=connection, changed_at=changed_at, first=current, last=current)
    yield writer
    writer._flush()


@contextmanager
def read_snapshot(connection: Connection) -> Iterator[Connection]:
    """Run reads in one transaction (the caller's, if it is in one already).

    On SQLite the reads then share one snapshot; on PostgreSQL (READ COMMITTED) each
    statement has its own, so a read that must be consistent is written as one statement.
    The transaction is ended (it wrote nothing) when the block ends, so
    the connection is free for a write transaction afterwards.
    """
    if connection.in_transaction():
        yield connection
        return
    with connection.begin():
        yield connection


def latest_version(connection: Connection) -> int:
    """The last version handed out (committed), 0 before the first change."""
    version = connection.execute(
        select(feed_counter.c.version).where(feed_counter.c.id == FEED_COUNTER_ID)
    ).scalar_one_or_none()
    if version is None:
        raise FeedCounterMissingError("table feed_counter has no row")
    return int(version)


def changes_for_site(*, connection: Connection, site_id: str, cursor: int, limit: int) -> FeedPage:
    """The first ``limit`` changes after version ``cursor`` that concern ``site_id``.

    ``next_cursor`` is the version of the page's last change, or ``cursor`` itself when
    there is nothing new; ``has_more`` says whether another page is already waiting.
    Raises :class:`FeedCursorAheadError` for a cursor past the last version central has
    handed out (see there).
    """
    if cursor < 0:
        raise ValueError(f"cursor must not be negative, got {cursor}")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PAGE}, got {limit}")
    # Two ordered index range scans on (site_id, version), merged: an OR of the two
    # conditions would have the database sort every matching row before the LIMIT.
    columns = (
        change_feed.c.version,
        change_feed.c.entity,
        change_feed.c.entity_key,
        change_feed.c.op,
        change_feed.c.data,
    )
    own, every = (
        select(*columns)
        .where(condition, change_feed.c.version > cursor)
        .order_by(change_feed.c.version)
        .limit(limit + 1)
        .subquery()
        for condition in (change_feed.c.site_id == site_id, change_feed.c.site_id.is_(None))
    )
    both = union_all(select(*own.c), select(*every.c)).subquery()
    query = select(*both.c).order_by(both.c.version).limit(limit + 1)

    with read_snapshot(connection):
        rows = connection.execute(query).all()
        if not rows and cursor > 0:
            latest = latest_version(connection)
            if cursor > latest:
                raise FeedCursorAheadError(site_id=site_id, cursor=cursor, latest=latest)

    has_more = len(rows) > limit
    changes = [
        FeedChange(
            version=row.version,
            entity=FeedEntity(row.entity),
            key=row.entity_key,
            op=ChangeOp(row.op),
            data=None if row.data is None else _sendable(row.entity, row.entity_key, row.data),
        )
        for row in rows[:limit]
    ]
    return FeedPage(
        site_id=site_id,
        changes=changes,
        next_cursor=changes[-1].version if changes else cursor,
        has_more=has_more,
    )


def _sendable(entity: str, key: str, data: str) -> dict[str, Any]:
    """A stored change as the edge's contract takes it (see ``services.master_text``)."""
    return sendable(FeedEntity(entity), key, json.loads(data))


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
