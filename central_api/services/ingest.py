"""Merging one pushed batch of a site's ledger into central: exactly-once effect.

The edge delivers at least once, so the same batch may arrive twice, late, or after
central already committed it (a timeout after commit). Everything here serves one rule:
an event changes central's balances once, no matter how often it is pushed.

The whole batch is one transaction, which first locks the site's ``site_sync_state`` row
(``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` already holds SQLite's write
lock). Pushes from one site queue here, so two copies of a batch racing each other cannot
both insert. Then one of two paths runs.

**The common push** (a backlog draining, a station's latest events) starts right after the
watermark and holds only events central has never seen. It is inserted at once, inside a
savepoint, and the database's own constraints check what the careful path would look up:
the primary key that no event id is held, the unique ``(site_id, seq)`` that no seq is,
and the balance upsert (it only adds to a balance kept in the event's unit, and only while
the balance stays below the largest amount) that no unit is mismatched and no balance
overflows. Refusal records lie at or below the watermark, so none can be in range.
If any check fails, the savepoint is rolled back and the careful path decides; if none
does, every event is ``accepted``, exactly what the careful path would have found, at
little more than the cost of the insert itself. The route takes no savepoint of its own
(``UNDO_BY_ROLLBACK``: two statements fewer, on PostgreSQL two round trips): a failed
check rolls back the push's transaction (or the push group's savepoint) instead, and the
push is merged again, straight down the careful path. On PostgreSQL a push of one event
sends its row, its balance's upsert and the read of the seqs past it as one statement
(:func:`_insert_one_and_look_past`: one round trip where there were three).

**The careful path**, for everything else:

1. Look up the batch's event ids, and the seqs of its range, in one query each.
2. Give every event a verdict: the same id with the same content (the held row, rebuilt
   as an event, equals the pushed one) is a ``duplicate``; the same id with other
   content, or a new id on a seq already taken (by a held event or by one central
   refused), is a ``conflict``; a unit of measure other than the balance's, or events
   that would take a balance beyond the largest amount, are ``invalid``; the rest are
   inserted.
3. Refuse the whole batch if its new events would start past a gap.
4. Insert the new rows (``COPY`` on PostgreSQL, executemany on SQLite), add their
   quantities to the balances with one upsert per (site, location, item, lot) (all in
   one statement on PostgreSQL), record the refused events whose seq nothing else holds
   (``refused_events``), and move the watermark up to the highest seq *settled* (held,
   or refused and recorded) with no gap below it. A refused event thus never holds back
   the ones after it; the edge parks it as a dead letter and may requeue it later, and
   if central then accepts it, its refusal record is deleted.

**Then, on either path**, the projections registered with the app (document progress,
valuation, alerts: :mod:`central_api.services.projections`) run on the events that were
really inserted, inside the same transaction, before the watermark is written. They
cannot change a verdict; if one raises, the whole push is rolled back.

A full batch is 5000 events, so the per-event work is kept lean (``docs/performance.md``
has the figures): rows go to the driver as tuples, built column by column in C (``map``,
``zip``, a whole batch's amounts converted at once) into the very values SQLAlchemy's
column-type bind processors would give (tests hold them equal), rather than through
SQLAlchemy's per-row parameter handling, which cost more than the database's own insert;
balances are summed as integer micro-units. Content is compared only when an id comes
back: hashing every event to have a digest ready cost more than inserting it.

**Last**, one audit log entry for the batch (:func:`central_api.services.audit.record`;
one per push, not per event, so a 5,000-event push pays for one small insert): its
range, how many events got each verdict, and the new watermark. It is the transaction's
last write, as the chain's lock is held until the commit. On PostgreSQL the watermark's
move rides in the entry's statement (one round trip fewer); on SQLite it runs just before.

Invariants relied on: after every commit, ``acked_through_seq + 1`` is *not* settled
(step 4 advances through every contiguous seq, including ones held above an earlier
hole), so a batch that starts past ``acked_through_seq + 1`` with anything new in it
always leaves a gap (step 3). And every refusal record is at or below the watermark: it is
written only by a batch that passed step 4, whose whole range is settled when it commits.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache, partial
from operator import add, attrgetter, itemgetter
from typing import Any, TypedDict

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import (
    BigInteger,
    Connection,
    DateTime,
    Dialect,
    RowMapping,
    String,
    Table,
    TextClause,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from central_api.core import driver
from central_api.core.db import write_transaction
from central_api.core.driver import Prepared, prepare

# Under the names they had when they were defined here, so the code that calls them is as it was.
from central_api.core.sqlbits import list_param as _list_param
from central_api.core.sqlbits import one_of as _one_of
from central_api.core.sqlbits import placeholder as _placeholder
from central_api.errors import BalanceChangedError, SequenceGapError, first_line
from central_api.models.base import MicroUnits, to_micro_units, to_micro_units_many
from central_api.models.ledger import ledger_events, refused_events, site_sync_state
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services.audit import Actor, ActorKind, AuditContext, appending_after, record
from central_api.services.projections import AcceptedEvents, Projections
from central_api.services.snapshots import correct as correct_snapshots
from jxc.contract import MAX_ABS_AMOUNT, EventKind, EventStatus, LedgerEvent, PushBatch

log = logging.getLogger("central_api.services.ingest")

_TAIL_PAGE = 1000
"""Seqs read per round when the watermark walks past the batch (see _advance_watermark)."""

BalanceKey = tuple[str, str, str]
"""(location, item, lot or NO_LOT) within one site."""


@dataclass(slots=True)
class _Candidate:
    """An event that is new to central, pending the checks that come before insert."""

    index: int
    event: LedgerEvent
    event_id: str
    key: BalanceKey


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What became of a push: a verdict per event, in batch order, and the new watermark."""

    site_id: str
    acked_through_seq: int
    verdicts: list[EventVerdict]
    received_at: datetime
    """When central took the push in; the edge measures its clock against it."""


UNDO_BY_SAVEPOINT = "savepoint"
"""The common push's attempt is undone by a savepoint of its own (:func:`merge_push`)."""

UNDO_BY_ROLLBACK = "rollback"
"""The common push's attempt is undone by the caller's rollback (:func:`merge_push`)."""


class CarefulPathNeeded(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """The common push's insert broke a check with no savepoint to undo it
    (``UNDO_BY_ROLLBACK``): roll back what the merge did and merge the push again with
    ``careful_because=why``. Nothing of the attempt may be kept, and nothing is answered."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def ingest_batch(
    *,
    connection: Connection,
    batch: PushBatch,
    received_at: datetime,
    projections: Projections,
    audit: AuditContext | None = None,
) -> PushOutcome:
    """Merge ``batch`` into central in one transaction and say what became of each event.

    ``connection`` must not be inside a transaction: this function opens and commits its
    own, so the caller cannot accidentally widen it. Raises :class:`SequenceGapError`
    (nothing changed) when the batch's new events would leave a hole in the site's ledger.
    ``projections`` run on the events inserted, inside the same transaction (see
    :mod:`central_api.services.projections`); whatever one raises rolls the push back and
    reaches the caller. The push's audit entry is attributed to ``audit`` (the route's
    request, with its id and address), or to the site itself without one.
    """

    def merge(undo: str, careful_because: str | None = None) -> MergedPush:
        with write_transaction(connection):
            return merge_push(
                connection,
                batch=batch,
                received_at=received_at,
                projections=projections,
                audit=audit,
                undo=undo,
                careful_because=careful_because,
            )

    try:
        merged = merge(undo=UNDO_BY_ROLLBACK)
    except CarefulPathNeeded as missed:  # rolled back: merged again, carefully
        merged = merge(UNDO_BY_SAVEPOINT, careful_because=missed.why)
    return merged.committed()


@dataclass(frozen=True, slots=True)
class MergedPush:
    """A push merged inside a transaction that has not committed yet."""

    outcome: PushOutcome
    path: str

    def committed(self) -> PushOutcome:
        """Log the push and hand its outcome on; call only once its transaction committed."""
        outcome = self.outcome
        _log_outcome(
            site_id=outcome.site_id,
            verdicts=outcome.verdicts,
            watermark=outcome.acked_through_seq,
            path=self.path,
        )
        return outcome


def merge_push(
    connection: Connection,
    *,
    batch: PushBatch,
    received_at: datetime,
    projections: Projections,
    audit: AuditContext | None = None,
    undo: str = UNDO_BY_SAVEPOINT,
    careful_because: str | None = None,
) -> MergedPush:
    """:func:`ingest_batch`'s work inside the caller's write transaction.

    For a caller that merges several pushes in one transaction, each in a savepoint of
    its own (:mod:`central_api.services.push_group`); nothing is answered before the
    transaction commits.

    ``undo`` says how the common push's attempt is undone when a check fails (see
    :func:`_insert_if_all_new`): ``UNDO_BY_SAVEPOINT`` (a savepoint of its own, then the
    careful path in the same transaction), or ``UNDO_BY_ROLLBACK``: no savepoint (two
    statements and, on PostgreSQL, two round trips fewer for every common push), and
    :class:`CarefulPathNeeded` is raised instead, for a caller that rolls back everything
    this merge did (its transaction, or a savepoint it took around the merge) and merges
    the push again with ``careful_because`` set, which goes straight to the careful path.
    """
    site_id = batch.site_id
    watermark = _lock_site(connection, site_id=site_id, now=received_at)
    common = (
        careful_because
        if careful_because is not None
        else _insert_if_all_new(
            connection, batch=batch, watermark=watermark, received_at=received_at, undo=undo
        )
    )
    accepted: Sequence[LedgerEvent]
    if isinstance(common, _Inserted):
        verdicts, path, accepted = common.verdicts, "common", batch.events
        watermark = _walk_past(
            connection, site_id=site_id, watermark=batch.events[-1].seq, first_page=common.past
        )
    else:
        path = f"careful: {common}"
        verdicts, watermark, accepted = _ingest_carefully(
            connection, batch=batch, watermark=watermark, received_at=received_at
        )
    if accepted:
        # Snapshots are the ledger's, not a projection: a late event corrects them even
        # when no projection is registered (a tool's ingest). An event dated this month
        # costs nothing here (services.snapshots).
        correct_snapshots(connection, site_id, accepted)
    if accepted and projections:
        projections.run(
            connection,
            AcceptedEvents(site_id=site_id, events=accepted, received_at=received_at),
        )
    moved = {"the_site": site_id, "watermark": watermark, "now": received_at}
    along = None
    if connection.dialect.name == "postgresql":
        along = (_MOVE_AND_RECORD, moved)  # the watermark's move in the entry's statement
    else:
        driver.run(connection, _site_statements(connection)[2], moved)
    _record_push(
        connection,
        audit or AuditContext(Actor(ActorKind.SITE, site_id)),
        batch=batch,
        verdicts=verdicts,
        all_accepted=path == "common",
        watermark=watermark,
        received_at=received_at,
        along=along,
    )
    outcome = PushOutcome(
        site_id=site_id, acked_through_seq=watermark, verdicts=verdicts, received_at=received_at
    )
    return MergedPush(outcome=outcome, path=path)


def _record_push(
    connection: Connection,
    audit: AuditContext,
    *,
    batch: PushBatch,
    verdicts: list[EventVerdict],
    all_accepted: bool,
    watermark: int,
    received_at: datetime,
    along: tuple[TextClause, Mapping[str, Any]] | None = None,
) -> None:
    """The push's one audit entry: what came, what became of it, where the site stands
    (``along``: see :func:`central_api.services.audit.record`)."""
    events = batch.events
    counts = (
        {EventStatus.ACCEPTED.value: len(events)}
        if all_accepted
        else {str(status): n for status, n in Counter(v["status"] for v in verdicts).items()}
    )
    first, last = events[0].seq, events[-1].seq
    record(
        connection,
        audit,
        action="sync.push",
        resource="sync_batch",
        resource_id=f"{batch.site_id}:{first}-{last}",
        site_id=batch.site_id,
        after={
            "first_seq": first,
            "last_seq": last,
            "events": len(events),
            "verdicts": counts,
            "acked_through_seq": watermark,
        },
        at=received_at,
        along=along,
    )


_MOVE_AND_RECORD = appending_after(
    "UPDATE site_sync_state SET acked_through_seq = :watermark, updated_at = :now "
    "WHERE site_id = :the_site",
    bindparam("watermark", type_=BigInteger),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("the_site", type_=String),
)
"""PostgreSQL: the watermark's move and the push's audit entry in one statement (one
round trip fewer per push); the move is the very ``UPDATE`` SQLite runs alone."""


def _insert_if_all_new(
    connection: Connection,
    *,
    batch: PushBatch,
    watermark: int,
    received_at: datetime,
    undo: str = UNDO_BY_SAVEPOINT,
) -> _Inserted | str:
    """Insert the whole batch if it is the common push; if not, why not (nothing changed).

    See the module docstring: the constraints the insert and the upsert check stand in
    for the careful path's lookups, and a savepoint undoes a push that breaks one. A value
    the database or the amount conversion refuses (PostgreSQL takes no NUL in text, a
    balance can overflow) also hands over to the careful path: the event carrying it may
    be one that path refuses without storing it, and if it does store it, the same error
    comes from there.
    """
    prepared = _common_push_rows(
        connection.dialect, batch=batch, watermark=watermark, received_at=received_at
    )
    if isinstance(prepared, str):
        return prepared
    rows, sums = prepared
    savepoint = connection.begin_nested() if undo == UNDO_BY_SAVEPOINT else None
    missed: str | None = None
    past: list[int] | None = None
    try:
        if connection.dialect.name == "postgresql" and len(rows) == 1 and len(sums) == 1:
            added, past = _insert_one_and_look_past(
                connection, site_id=batch.site_id, row=rows[0], sums=sums, received_at=received_at
            )
        else:
            _insert_rows(connection, rows)
            added = _add_to_balances(
                connection, site_id=batch.site_id, sums=sums, received_at=received_at
            )
    except IntegrityError:
        missed = "an event id or seq is held already"
    except (DataError, ValueError) as error:
        missed = f"a value was refused ({first_line(error)})"
    else:
        if added != len(sums):
            missed = "a balance is kept in another unit or would grow too large"
    if missed is not None:
        if savepoint is None:
            # Nothing here can undo the attempt: the caller rolls back and merges again.
            raise CarefulPathNeeded(missed)
        savepoint.rollback()
        return missed
    if savepoint is not None:
        savepoint.commit()
    accepted = EventStatus.ACCEPTED
    verdicts: list[EventVerdict] = [
        {"event_id": event.event_id, "seq": event.seq, "status": accepted, "detail": None}
        for event in batch.events
    ]
    return _Inserted(verdicts=verdicts, past=past)


@dataclass(frozen=True, slots=True)
class _Inserted:
    """The common push, inserted: every event accepted."""

    verdicts: list[EventVerdict]
    past: list[int] | None
    """The first page of held seqs past the batch, if read with the insert."""


def _insert_one_and_look_past(
    connection: Connection,
    *,
    site_id: str,
    row: tuple[Any, ...],
    sums: BalanceSums,
    received_at: datetime,
) -> tuple[int, list[int]]:
    """PostgreSQL, a push of one event: its row, its balance's upsert and the read of the
    seqs held past it, in one statement; how many balances were written, and that page.

    Three round trips of a one-event push in one, with the same effect: the row's
    insert and the upsert are the very statements :func:`_insert_rows` and
    :func:`_add_to_balances` send (a data-modifying ``WITH`` runs each once, whether or
    not the rest reads it), an id or seq held already fails the whole statement with
    the same ``IntegrityError``, and the upsert's ``RETURNING`` counts the balances it
    wrote as its row count did. The read sees the rows as they were before the statement
    (one snapshot), which is what :func:`_walk_past` reads: only seqs past the event's.
    """
    (balance,) = _as_rows(_balance_columns(connection.dialect, site_id, sums, received_at))
    ((added, past),) = driver.rows_sql(
        connection, _one_event_sql(connection.dialect), (*row, *balance, site_id, row[_ROW_SEQ])
    )
    return int(added), list(past)


@lru_cache(maxsize=4)
def _one_event_sql(dialect: Dialect) -> str:
    """:func:`_insert_one_and_look_past`'s statement, made once."""
    ledger = _insert_sql(dialect, ledger_events, columns=_LEDGER_COLUMNS)
    table = dialect.identifier_preparer.format_table(ledger_events)
    seq = dialect.identifier_preparer.format_column(ledger_events.c.seq)
    site = dialect.identifier_preparer.format_column(ledger_events.c.site_id)
    past = (
        f"SELECT {seq} FROM {table} WHERE {site} = %s AND {seq} > %s "  # noqa: S608 - our names
        f"ORDER BY {seq} LIMIT {_TAIL_PAGE}"
    )
    upsert = _upsert_balances_sql(dialect)
    return (
        f"WITH event AS ({ledger}), balance AS ({upsert} RETURNING 1) "  # noqa: S608 - ours
        f"SELECT (SELECT count(*) FROM balance), ARRAY({past})"
    )


def _common_push_rows(
    dialect: Dialect, *, batch: PushBatch, watermark: int, received_at: datetime
) -> tuple[list[tuple[Any, ...]], BalanceSums] | str:
    """The batch's rows and its sums per balance, if nothing seen before the insert
    rules the short path out; if something does, what."""
    events = batch.events
    if events[0].seq != watermark + 1:
        return "the batch does not start right after the watermark"
    try:
        rows = _ledger_rows(
            dialect,
            site_id=batch.site_id,
            events=events,
            event_ids=_id_texts([event.event_id for event in events]),
            received_at=received_at,
        )
    except ValueError as error:
        return f"a value was refused ({first_line(error)})"
    sums = _sum_by_key(rows)
    if sums is None:
        return "two events of one balance are in different units"
    if any(abs(qty) >= _MAX_ABS_MICRO for _, qty in sums.values()):
        return "a balance would grow too large"
    return rows, sums


def _ingest_carefully(
    connection: Connection, *, batch: PushBatch, watermark: int, received_at: datetime
) -> tuple[list[EventVerdict], int, list[LedgerEvent]]:
    """Every event's verdict, looked up one by one; the new watermark; the events inserted."""
    site_id = batch.site_id
    events = batch.events
    results: list[EventVerdict | None] = [None] * len(events)
    candidates, settled_seqs = _drop_already_held(
        connection, batch=batch, results=results, watermark=watermark
    )
    refusals = _refusals_to_record(events, results, settled_seqs)

    if (candidates or refusals) and events[0].seq > watermark + 1:
        raise SequenceGapError(
            site_id=site_id, acked_through_seq=watermark, batch_first_seq=events[0].seq
        )

    inserted = _drop_unfit_events(
        connection, site_id=site_id, candidates=candidates, results=results
    )
    if inserted:
        rows = _ledger_rows(
            connection.dialect,
            site_id=site_id,
            events=[row.event for row in inserted],
            event_ids=[row.event_id for row in inserted],
            received_at=received_at,
        )
        _insert_rows(connection, rows)
        sums = _sum_by_key(rows)
        if sums is None:  # pragma: no cover - _drop_unfit_events kept one unit per key
            raise AssertionError("events of one balance in two units passed the balance check")
        added = _add_to_balances(connection, site_id=site_id, sums=sums, received_at=received_at)
        if added != len(sums):
            # The balances were read under the site's lock, but a person may have
            # corrected one by hand since; the edge retries and the next read sees it.
            raise BalanceChangedError(site_id=site_id, balances=len(sums) - added)
        for row in inserted:
            results[row.index] = _verdict(row.event, EventStatus.ACCEPTED)
        _forget_refusals(
            connection,
            site_id=site_id,
            seqs=[row.event.seq for row in inserted if row.event.seq <= watermark],
        )
    refusals += [
        (row.event, result)
        for row in candidates
        if (result := results[row.index]) is not None and result["status"] is EventStatus.INVALID
    ]
    if refusals:
        _record_refusals(connection, site_id=site_id, refusals=refusals, now=received_at)
    if inserted or refusals:
        watermark = _advance_watermark(
            connection,
            site_id=site_id,
            watermark=watermark,
            held_in_batch=settled_seqs
            | {row.event.seq for row in inserted}
            | {event.seq for event, _ in refusals},
            batch_last_seq=events[-1].seq,
        )
    verdicts = [result for result in results if result is not None]
    return verdicts, watermark, [row.event for row in inserted]


def _lock_site(connection: Connection, *, site_id: str, now: datetime) -> int:
    """Create the site's sync row if this is its first push, lock it, return its watermark.

    The row is locked first and created only if it is not there (a site's first push):
    one statement for every push but the first, where it was two (a round trip each on
    PostgreSQL). ``ON CONFLICT DO NOTHING`` keeps the creation race-safe: of two first
    pushes, one inserts and the other waits on that row, then finds it. The statements
    are built once per database (:func:`_site_statements`), not per push.
    """
    create, locked, _ = _site_statements(connection)
    params = {"the_site": site_id, "now": now}
    held = driver.rows(connection, locked, params)
    if held:
        return int(held[0][0])
    driver.run(connection, create, params)
    (watermark,) = driver.rows(connection, locked, params)[0]
    return int(watermark)


_SITE_STATEMENTS: dict[str, tuple[Prepared, Prepared, Prepared]] = {}


def _site_statements(connection: Connection) -> tuple[Prepared, Prepared, Prepared]:
    """The site row's create, lock and watermark update, with bound parameters, built
    once per dialect: building a statement cost more than running it on a small push
    (``docs/performance.md``, "Cost per request"); compiled once and run at the driver
    (:mod:`central_api.core.driver`), since SQLAlchemy's execution of each cost more than
    the driver's."""
    name = connection.dialect.name
    known = _SITE_STATEMENTS.get(name)
    if known is None:
        site = bindparam("the_site", type_=String)
        create = (
            _insert_for(connection, site_sync_state)
            .values(site_id=site, acked_through_seq=0, updated_at=bindparam("now"))
            .on_conflict_do_nothing(index_elements=[site_sync_state.c.site_id])
        )
        locked = (
            select(site_sync_state.c.acked_through_seq)
            .where(site_sync_state.c.site_id == site)
            .with_for_update()
        )
        move = (
            update(site_sync_state)
            .where(site_sync_state.c.site_id == site)
            .values(acked_through_seq=bindparam("watermark"), updated_at=bindparam("now"))
        )
        known = _SITE_STATEMENTS[name] = (
            prepare(create, connection.dialect),
            prepare(locked, connection.dialect),
            prepare(move, connection.dialect),
        )
    return known


def _drop_already_held(
    connection: Connection,
    *,
    batch: PushBatch,
    results: list[EventVerdict | None],
    watermark: int,
) -> tuple[list[_Candidate], set[int]]:
    """Fill in a verdict for every event central already holds, or whose seq it holds.

    Returns the events still to be checked, and the seqs of the batch's range that
    central has already settled: held (by whichever event) or refused and recorded.
    """
    events = batch.events
    event_ids = _id_texts([event.event_id for event in events])
    by_id = {
        row.event_id: row._mapping
        for row in connection.execute(
            select(*_EVENT_COLUMNS).where(
                _one_of(connection, ledger_events.c.event_id, "event_ids")
            ),
            {"event_ids": _list_param(connection, event_ids)},
        )
    }
    seq_holders: dict[int, str] = dict(
        connection.execute(
            select(ledger_events.c.seq, ledger_events.c.event_id).where(
                ledger_events.c.site_id == batch.site_id,
                ledger_events.c.seq.between(events[0].seq, events[-1].seq),
            )
        ).all()
    )

    # Refusals are recorded only at or below the watermark (see _record_refusals), so a
    # batch wholly above it, the common case, has none to look up.
    refused_holders: dict[int, str] = {}
    if events[0].seq <= watermark:
        refused_holders = dict(
            connection.execute(
                select(refused_events.c.seq, refused_events.c.event_id).where(
                    refused_events.c.site_id == batch.site_id,
                    refused_events.c.seq.between(events[0].seq, events[-1].seq),
                )
            ).all()
        )

    candidates: list[_Candidate] = []
    for index, (event, event_id) in enumerate(zip(events, event_ids, strict=True)):
        held = by_id.get(event_id)
        if held is not None:
            if _same_content(held, event):
                results[index] = _verdict(event, EventStatus.DUPLICATE)
            else:
                results[index] = _verdict(
                    event,
                    EventStatus.CONFLICT,
                    f"event {event_id} is already held with different content "
                    f"(site {held['site_id']}, seq {held['seq']})",
                )
            continue
        holder = seq_holders.get(event.seq)
        if holder is not None:
            results[index] = _verdict(
                event,
                EventStatus.CONFLICT,
                f"seq {event.seq} of site {batch.site_id} is already held by event {holder}",
            )
            continue
        refused_holder = refused_holders.get(event.seq)
        if refused_holder is not None and refused_holder != event_id:
            results[index] = _verdict(
                event,
                EventStatus.CONFLICT,
                f"seq {event.seq} of site {batch.site_id} belongs to event {refused_holder}, "
                "which central refused: requeue that event; a seq is never reused",
            )
            continue
        key = (event.location, event.item, event.lot or NO_LOT)
        candidates.append(_Candidate(index, event, event_id, key))
    return candidates, set(seq_holders) | set(refused_holders)


_REFUSED = frozenset({EventStatus.CONFLICT, EventStatus.INVALID})


def _refusals_to_record(
    events: Sequence[LedgerEvent], results: Sequence[EventVerdict | None], settled: set[int]
) -> list[tuple[LedgerEvent, EventVerdict]]:
    """Refused events whose seq nothing settles yet: their refusal must be recorded.

    That is an event whose id central holds at another seq; a conflict at a seq held by
    another event needs no record, the seq is settled by that event.
    """
    return [
        (event, result)
        for event, result in zip(events, results, strict=True)
        if result is not None and result["status"] in _REFUSED and event.seq not in settled
    ]


def _record_refusals(
    connection: Connection,
    *,
    site_id: str,
    refusals: Sequence[tuple[LedgerEvent, EventVerdict]],
    now: datetime,
) -> None:
    """Record that central refused these events, so their seqs count as settled.

    The watermark then passes them and one bad event does not hold back every later one;
    the edge, told by the event's result, parks it as a dead letter. Called only after the
    gap check passed, and every seq of such a batch ends up settled, so a refusal is
    always at or below the watermark. A refusal repeated (the edge requeued the event
    and central still refuses it) counts one more attempt.
    """
    upsert = _insert_for(connection, refused_events)
    statement = upsert.on_conflict_do_update(
        index_elements=[refused_events.c.site_id, refused_events.c.seq],
        set_={
            "status": upsert.excluded.status,
            "detail": upsert.excluded.detail,
            "attempts": refused_events.c.attempts + 1,
            "last_refused_at": upsert.excluded.last_refused_at,
        },
    )
    connection.execute(
        statement,
        [
            {
                "site_id": site_id,
                "seq": event.seq,
                "event_id": str(event.event_id),
                "status": result["status"].value,
                "detail": result["detail"] or result["status"].value,
                "body": event.model_dump_json(),
                "attempts": 1,
                "first_refused_at": now,
                "last_refused_at": now,
            }
            for event, result in refusals
        ],
    )


def _forget_refusals(connection: Connection, *, site_id: str, seqs: list[int]) -> None:
    """A refused event, requeued, was accepted: its seq is held now, not refused.

    Only events at or below the watermark can have been refused before, so new events
    (the usual batch) skip this.
    """
    if seqs:
        connection.execute(
            delete(refused_events).where(
                refused_events.c.site_id == site_id, refused_events.c.seq.in_(seqs)
            )
        )


def _drop_unfit_events(
    connection: Connection,
    *,
    site_id: str,
    candidates: list[_Candidate],
    results: list[EventVerdict | None],
) -> list[_Candidate]:
    """Refuse events their balance cannot take: another unit, or beyond the largest amount.

    A balance is one number; adding 3 ``kg`` to 10 ``pcs`` would give 13 of nothing.
    The first event of a key fixes its unit. Nothing converts units yet, so a mismatch
    is ``invalid`` rather than guessed at. A balance, like every amount, stays below
    ``MAX_ABS_AMOUNT`` in magnitude: if a batch's events of one key would take it there,
    all of them are ``invalid`` (the short path refuses the same pushes, since it checks
    the balance the whole batch leaves, and a rule per event would depend on their order).
    """
    if not candidates:
        return []
    keys = {row.key for row in candidates}
    # Filter by item only and match the full key here: a row-value IN over thousands of
    # keys costs more to build and parse than the few extra rows it would leave out.
    held: dict[BalanceKey, tuple[str, Decimal]] = {}
    for location, item, lot, uom, qty in connection.execute(
        select(
            stock_balances.c.location,
            stock_balances.c.item,
            stock_balances.c.lot,
            stock_balances.c.uom,
            stock_balances.c.qty,
        ).where(
            stock_balances.c.site_id == site_id,
            _one_of(connection, stock_balances.c.item, "items"),
        ),
        {"items": _list_param(connection, sorted({key[1] for key in keys}))},
    ):
        if (location, item, lot) in keys:
            held[(location, item, lot)] = (uom, qty)
    same_unit: list[_Candidate] = []
    totals: dict[BalanceKey, Decimal] = {}
    for row in candidates:
        unit, balance = held.setdefault(row.key, (row.event.uom, Decimal(0)))
        if unit == row.event.uom:
            same_unit.append(row)
            totals[row.key] = totals.get(row.key, balance) + row.event.qty
            continue
        location, item, lot = row.key
        results[row.index] = _verdict(
            row.event,
            EventStatus.INVALID,
            f"{item} (lot {lot or 'none'}) at {location} is counted in {unit}, not {row.event.uom}",
        )
    too_large = {key for key, total in totals.items() if abs(total) >= MAX_ABS_AMOUNT}
    for row in same_unit:
        if row.key in too_large:
            location, item, lot = row.key
            results[row.index] = _verdict(
                row.event,
                EventStatus.INVALID,
                f"{item} (lot {lot or 'none'}) at {location}: this push's events would take "
                f"the balance to {totals[row.key]}, beyond the largest amount central keeps "
                f"(below {MAX_ABS_AMOUNT:,} in magnitude)",
            )
    return [row for row in same_unit if row.key not in too_large]


_COPY_FROM_ROWS = 200
"""PostgreSQL: batches of at least this many rows go by ``COPY``; smaller ones by INSERT.
``COPY`` costs two round trips more than it saves on a handful of rows (it reads the
column types first), and most pushes of a live site hold a few events."""


def _insert_rows(
    connection: Connection, rows: Sequence[tuple[Any, ...]], *, table: Table = ledger_events
) -> None:
    """Insert :func:`_ledger_rows`'s rows: ``COPY`` on PostgreSQL for a large batch,
    else executemany (psycopg pipelines it). ``table``: ``ledger_events``, or
    ``central_events`` (the same columns) for central's own bookings."""
    if connection.dialect.name == "postgresql" and len(rows) >= _COPY_FROM_ROWS:
        _copy_rows(connection, table, rows, columns=_LEDGER_COLUMNS)
    else:
        statement = _insert_sql(connection.dialect, table, columns=_LEDGER_COLUMNS)
        driver.run_sql(connection, statement, rows, many=True)


BalanceSums = dict[BalanceKey, tuple[str, int]]
"""Per balance key: its unit and the sum of the events' quantities, in micro-units."""


def _sum_by_key(rows: Sequence[tuple[Any, ...]]) -> BalanceSums | None:
    """Sum the rows' quantities per balance key, so each key is written once; None if
    two events of one key are in different units.

    Sums integers per (key, unit), from rows that lead with the key and the unit, and
    then looks for a key that came with two units: all but the one addition per event
    runs in C (building a key tuple and adding a Decimal per event in Python took half
    as long again).
    """
    keyed = list(map(_ROW_KEY_AND_UNIT, rows))
    totals = dict.fromkeys(keyed, 0)
    for key, qty in zip(keyed, map(_ROW_QTY, rows), strict=True):
        totals[key] += qty
    if len(set(map(_ROW_KEY, totals))) != len(totals):
        return None
    return {
        (location, item, NO_LOT if lot is None else lot): (unit, total)
        for (location, item, lot, unit), total in totals.items()
    }


def _add_to_balances(
    connection: Connection, *, site_id: str, sums: BalanceSums, received_at: datetime
) -> int:
    """Start or add to each key's balance; how many balances were written.

    A balance kept in another unit than the sum's is left as it is and not counted, so
    a caller that did not check units first learns of the mismatch from the count.
    """
    converted = _balance_columns(connection.dialect, site_id, sums, received_at)
    if connection.dialect.name == "postgresql" and len(sums) > 1:
        # All keys in one statement, from one array per column, rather than one
        # statement per key in the pipeline. One key (a one-event push) goes as one row:
        # psycopg's arrays cost it 40 us more to send than the row's plain values.
        statement, parameters = _upsert_balances_from_arrays(connection.dialect, converted)
        return driver.run_sql(connection, statement, parameters)
    rows = _as_rows(converted)
    return driver.run_sql(connection, _upsert_balances_sql(connection.dialect), rows, many=True)


def _balance_columns(
    dialect: Dialect, site_id: str, sums: BalanceSums, received_at: datetime
) -> list[list[Any] | _Same]:
    """The balance upsert's columns for ``sums``, as the driver takes them."""
    keys = list(sums)
    columns: dict[str, list[Any] | _Same] = {
        "site_id": _Same(site_id),
        "location": [key[0] for key in keys],
        "item": [key[1] for key in keys],
        "lot": [key[2] for key in keys],
        "uom": [unit for unit, _ in sums.values()],
        "qty": [qty for _, qty in sums.values()],
        "updated_at": _Same(received_at),
    }
    return _driver_columns(dialect, stock_balances, columns, ready={"qty"})


# --- rows straight to the driver -------------------------------------------------------
#
# SQLAlchemy's executemany spends more per row on its own parameter handling than the
# database spends inserting it. The helpers below hand the driver plain tuples instead,
# converted by the very bind processors SQLAlchemy would have applied (the MicroUnits
# check, SQLite's datetime text), and build the SQL from the table definitions.


@dataclass(frozen=True, slots=True)
class _Same:
    """A column with the same value in every row: converted once, not once per row."""

    value: Any


def _driver_columns(
    dialect: Dialect,
    table: Table,
    columns: Mapping[str, list[Any] | _Same],
    *,
    ready: frozenset[str] | set[str] = frozenset(),
) -> list[list[Any] | _Same]:
    """The columns of ``table``, in order, each value converted as the driver takes it
    (except the ``ready`` ones, given in the driver's form already)."""
    if columns.keys() != set(table.c.keys()):
        raise ValueError(f"{table.name}: rows give {sorted(columns)}, table has {table.c.keys()}")
    converted: list[list[Any] | _Same] = []
    for column, process in zip(table.c, _bind_processors(dialect, table), strict=True):
        values = columns[column.name]
        if process is None or column.name in ready:
            converted.append(values)
        elif isinstance(values, _Same):
            converted.append(_Same(process(values.value)))
        else:
            converted.append([process(value) for value in values])
    return converted


@lru_cache(maxsize=32)
def _bind_processors(dialect: Dialect, table: Table) -> tuple[Callable[[Any], Any] | None, ...]:
    """What SQLAlchemy would apply to each column's parameters (None: nothing to do), in
    the table's order; asked once per dialect and table, not on every push."""
    return tuple(column.type.dialect_impl(dialect).bind_processor(dialect) for column in table.c)


def _as_rows(columns: Sequence[list[Any] | _Same]) -> list[tuple[Any, ...]]:
    endless = (itertools.repeat(c.value) if isinstance(c, _Same) else c for c in columns)
    return list(zip(*endless, strict=False))  # the repeats are endless; the lists agree


_PLAIN_FIELDS = (
    *("location", "item", "lot", "uom", "seq", "ref", "device_id", "actor"),
    *("doc_type", "doc_id", "doc_line"),
)
"""The fields stored as they are; a row starts with them, the balance key and unit first."""
_LEDGER_COLUMNS = (
    *_PLAIN_FIELDS,
    *("event_id", "site_id", "occurred_at", "received_at", "kind", "expiry", "qty", "unit_cost"),
)
"""The order :func:`_ledger_rows` writes a row's values in, and names the columns in."""
if sorted(_LEDGER_COLUMNS) != sorted(ledger_events.c.keys()):  # pragma: no cover - at import
    raise ImportError("ledger_events changed: update _LEDGER_COLUMNS and _ledger_rows")

_PLAIN = attrgetter(*_PLAIN_FIELDS)
_OCCURRED_AT, _KIND, _EXPIRY, _QTY, _UNIT_COST = (
    attrgetter(name) for name in ("occurred_at", "kind", "expiry", "qty", "unit_cost")
)
_ROW_KEY = itemgetter(0, 1, 2)
_ROW_KEY_AND_UNIT = itemgetter(0, 1, 2, 3)
_ROW_QTY = itemgetter(_LEDGER_COLUMNS.index("qty"))
_ROW_SEQ = _LEDGER_COLUMNS.index("seq")
_KIND_TEXT = {kind: kind.value for kind in EventKind}
_MAX_ABS_MICRO = to_micro_units(MAX_ABS_AMOUNT)


@dataclass(frozen=True, slots=True)
class _LedgerBinds:
    """How ``occurred_at``/``received_at`` and ``expiry`` reach this dialect's driver."""

    times: Callable[[list[datetime]], list[Any]]
    """A whole batch's times at once (see :func:`_sqlite_datetime_texts`)."""
    day: Callable[[date], Any]


def _ledger_rows(
    dialect: Dialect,
    *,
    site_id: str,
    events: Sequence[LedgerEvent],
    event_ids: Sequence[str],
    received_at: datetime,
) -> list[tuple[Any, ...]]:
    """The rows of ``ledger_events`` for ``events``, as the driver takes them, their
    values in the order of ``_LEDGER_COLUMNS``.

    The same values :func:`_driver_columns` gives (a test holds the two equal), built
    column by column with ``map`` and ``zip`` so that the loops run in C: this runs for
    every event ingested, and a Python loop over the events, reading each field and
    converting each amount by a call, cost about a fifth more. The fields stored as they are
    come out of each event as one tuple; the converted ones are zipped and appended.
    """
    binds = _ledger_binds(dialect)
    count = len(events)
    if len(event_ids) != count:  # map() below would stop at the shorter, silently
        raise ValueError(f"{count} events but {len(event_ids)} event ids")
    received, *occurred = binds.times([received_at, *map(_OCCURRED_AT, events)])
    day = binds.day
    costs = list(map(_UNIT_COST, events))
    known_costs = iter(to_micro_units_many([cost for cost in costs if cost is not None]))
    converted = zip(
        event_ids,
        [site_id] * count,
        occurred,
        [received] * count,
        map(_KIND_TEXT.__getitem__, map(_KIND, events)),
        [None if expiry is None else day(expiry) for expiry in map(_EXPIRY, events)],
        to_micro_units_many(list(map(_QTY, events))),
        [None if cost is None else next(known_costs) for cost in costs],
        strict=True,
    )
    return list(map(add, map(_PLAIN, events), converted))


_BINDS: dict[str, _LedgerBinds] = {}


def _ledger_binds(dialect: Dialect) -> _LedgerBinds:
    """The conversions :func:`_ledger_rows` applies, checked once per dialect.

    Every column it passes through unchanged must have no bind processor, and the amount
    columns must be plain :class:`MicroUnits`; a change to the table or to SQLAlchemy that
    breaks this fails here, not silently in the stored rows. SQLite's date and datetime
    texts are spelled by ``date.isoformat`` and :func:`_sqlite_datetime_texts`, faster
    than SQLAlchemy's processors (which format a dict per value) and the same text,
    checked here on a few awkward values (and by property tests on many); if they ever
    differ, SQLAlchemy's own processors are used.
    """
    known = _BINDS.get(dialect.name)
    if known is not None:
        return known
    processors = {
        column.name: column.type.dialect_impl(dialect).bind_processor(dialect)
        for column in ledger_events.c
    }
    converted = {"occurred_at", "received_at", "expiry", "qty", "unit_cost"}
    for name, processor in processors.items():
        if name not in converted and processor is not None:
            raise TypeError(f"ledger_events.{name} now has a bind processor: convert it")
    for name in ("qty", "unit_cost"):
        column_type = ledger_events.c[name].type
        if not isinstance(column_type, MicroUnits) or column_type.impl_instance.bind_processor(
            dialect
        ):
            raise TypeError(f"ledger_events.{name} is no longer plain MicroUnits")
    moments = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 2, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 12, 2, 8, 0, 0, 120_000, tzinfo=UTC),
        datetime(2026, 12, 2, 8, 0, 0, 1, tzinfo=timezone(timedelta(hours=8))),
        datetime(2026, 12, 2, 8, 0),
    ]
    time_processor = processors["occurred_at"]
    times: Callable[[list[datetime]], list[Any]] = _unchanged
    if time_processor is not None:
        times = _sqlite_datetime_texts
        if times(moments) != [time_processor(moment) for moment in moments]:
            times = partial(_each, time_processor)
    day: Callable[[date], Any] = _unchanged
    day_processor = processors["expiry"]
    if day_processor is not None:
        day = date.isoformat
        if any(day(m.date()) != day_processor(m.date()) for m in moments):
            day = day_processor
    binds = _LedgerBinds(times=times, day=day)
    _BINDS[dialect.name] = binds
    return binds


def _each(processor: Callable[[Any], Any], values: list[Any]) -> list[Any]:
    return [processor(value) for value in values]


def _unchanged(value: Any) -> Any:
    return value


_ISO_TIMES = TypeAdapter(list[datetime])


def _sqlite_datetime_texts(values: list[datetime]) -> list[str]:
    """SQLAlchemy's SQLite datetime text of each value: the wall-clock time, always with
    microseconds, no offset.

    pydantic's serializer writes ISO 8601 for the whole list in Rust
    (``2026-12-02T08:00:00.120000Z``, the fraction left out when it is zero, an offset or
    ``Z`` after it); cutting that to shape costs less than formatting each value here.
    """
    texts: list[str] = _ISO_TIMES.dump_python(values, mode="json")
    return [
        f"{text[:10]} {text[11:26]}" if text[19:20] == "." else f"{text[:10]} {text[11:19]}.000000"
        for text in texts
    ]


def _column_list(dialect: Dialect, table: Table, columns: Sequence[str] | None = None) -> str:
    """The table's columns, quoted, in the table's order or in the order ``columns`` names."""
    quote = dialect.identifier_preparer.format_column
    chosen = table.c if columns is None else [table.c[name] for name in columns]
    return ", ".join(quote(column) for column in chosen)


@lru_cache(maxsize=64)
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...] | None = None) -> str:
    """The INSERT for ``table``'s rows, made once per dialect (a push asks every time)."""
    values = ", ".join(_placeholder(dialect) for _ in table.c)
    name = dialect.identifier_preparer.format_table(table)
    names = _column_list(dialect, table, columns)
    return f"INSERT INTO {name} ({names}) VALUES ({values})"  # noqa: S608 - our own names


def _on_conflict_add_to_balance(dialect: Dialect) -> str:
    quote = dialect.identifier_preparer.format_column
    table = dialect.identifier_preparer.format_table(stock_balances)
    key = ", ".join(quote(column) for column in stock_balances.primary_key.columns)
    qty, updated_at = quote(stock_balances.c.qty), quote(stock_balances.c.updated_at)
    uom = quote(stock_balances.c.uom)
    # Both terms lie below the limit (balances by this rule, sums checked before), so the
    # sum cannot overflow a BIGINT on either database.
    limit = _MAX_ABS_MICRO
    return (
        f" ON CONFLICT ({key}) DO UPDATE SET "
        f"{qty} = {table}.{qty} + excluded.{qty}, {updated_at} = excluded.{updated_at} "
        f"WHERE {table}.{uom} = excluded.{uom} AND abs({table}.{qty} + excluded.{qty}) < {limit}"
    )


@lru_cache(maxsize=16)
def _upsert_balances_sql(dialect: Dialect) -> str:
    """Start a key's balance, or add to it if it is kept in the same unit and stays below
    the largest amount; one row of parameters per key."""
    return _insert_sql(dialect, stock_balances) + _on_conflict_add_to_balance(dialect)


def _upsert_balances_from_arrays(
    dialect: Dialect, columns: Sequence[list[Any] | _Same]
) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL: the same upsert for every key at once, and its parameters.

    A list column becomes an array parameter read back by ``unnest``; a ``_Same`` column
    one plain parameter.
    """
    quote = dialect.identifier_preparer.format_column
    picks: list[str] = []
    arrays: list[str] = []
    names: list[str] = []
    plain: list[Any] = []
    lists: list[list[Any]] = []
    for column, values in zip(stock_balances.c, columns, strict=True):
        if isinstance(values, _Same):
            picks.append("%s")
            plain.append(values.value)
        else:
            picks.append(f"v.{quote(column)}")
            arrays.append(f"%s::{column.type.compile(dialect)}[]")
            names.append(quote(column))
            lists.append(values)
    table = dialect.identifier_preparer.format_table(stock_balances)
    statement = (
        f"INSERT INTO {table} ({_column_list(dialect, stock_balances)}) "  # noqa: S608
        f"SELECT {', '.join(picks)} FROM unnest({', '.join(arrays)}) AS v({', '.join(names)})"
        + _on_conflict_add_to_balance(dialect)
    )
    return statement, (*plain, *lists)  # the SELECT's plain parameters come first


def _copy_rows(
    connection: Connection,
    table: Table,
    rows: Sequence[tuple[Any, ...]],
    *,
    columns: Sequence[str] | None = None,
) -> None:
    """PostgreSQL's binary ``COPY ... FROM STDIN``, inside the connection's transaction.

    Several times faster than an INSERT per row, with the same effect: a row that breaks
    a constraint fails the statement, and the transaction with it. The driver's errors
    are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError``, ...), as every
    other statement's are, so callers and the API's error handlers see no difference.
    """
    import psycopg  # noqa: PLC0415 - PostgreSQL's driver, needed only on PostgreSQL

    driver = connection.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise TypeError(f"COPY needs a psycopg 3 connection, not {type(driver).__name__}")
    name = connection.dialect.identifier_preparer.format_table(table)
    names = _column_list(connection.dialect, table, columns)
    statement = f"COPY {name} ({names}) FROM STDIN (FORMAT BINARY)"
    try:
        with driver.cursor() as cursor:
            # Binary COPY must be told the column types; the table itself says them.
            cursor.execute(f"SELECT {names} FROM {name} LIMIT 0")  # noqa: S608 - our names
            types = [column.type_code for column in cursor.description or ()]
            with cursor.copy(statement) as copy:
                copy.set_types(types)
                for row in rows:
                    copy.write_row(row)
    except psycopg.Error as error:
        raise DBAPIError.instance(
            statement, None, error, psycopg.Error, dialect=connection.dialect
        ) from error


def _advance_watermark(
    connection: Connection,
    *,
    site_id: str,
    watermark: int,
    held_in_batch: set[int],
    batch_last_seq: int,
) -> int:
    """The highest seq settled with nothing missing below it.

    Within the batch's range the settled set answers. Refusal records lie at or below
    the old watermark, so past it only held events count (see :func:`_walk_past`).
    """
    while watermark + 1 in held_in_batch:
        watermark += 1
    if watermark < batch_last_seq:
        return watermark
    return _walk_past(connection, site_id=site_id, watermark=watermark)


def _walk_past(
    connection: Connection, *, site_id: str, watermark: int, first_page: list[int] | None = None
) -> int:
    """Move the watermark over held seqs just past it, up to the first gap.

    Seqs may have arrived earlier above a hole the batch has just filled, so they are
    read in pages until the first gap; normally that read finds nothing. ``first_page``:
    the first page's seqs, read already (:func:`_insert_one_and_look_past`).
    """
    while True:
        if first_page is not None:
            page: Sequence[tuple[int] | Sequence[int]] = [(seq,) for seq in first_page]
            first_page = None
        else:
            page = driver.rows(
                connection,
                driver.prepared(_SEQS_PAST, connection.dialect),
                {"site_id": site_id, "watermark": watermark},
            )
        for (seq,) in page:
            if seq != watermark + 1:
                return watermark
            watermark = seq
        if len(page) < _TAIL_PAGE:
            return watermark


_SEQS_PAST = (
    select(ledger_events.c.seq)
    .where(
        ledger_events.c.site_id == bindparam("site_id", type_=String),
        ledger_events.c.seq > bindparam("watermark"),
    )
    .order_by(ledger_events.c.seq)
    .limit(_TAIL_PAGE)
)
"""A page of held seqs past the watermark; built once (see :func:`_site_statements`)."""


_UUID_TEXTS = TypeAdapter(list[uuid.UUID])


def _id_texts(ids: list[uuid.UUID]) -> list[str]:
    """``str(event_id)`` of every id, spelled by pydantic's serializer: the same canonical
    text, written in Rust for the whole batch at about a seventh of the cost."""
    texts: list[str] = _UUID_TEXTS.dump_python(ids, mode="json")
    return texts


_EVENT_COLUMNS = tuple(ledger_events.c[name] for name in LedgerEvent.model_fields)
"""The columns a held event is rebuilt from: all but ``received_at``."""


def stored_event(row: RowMapping) -> LedgerEvent:
    """The event a ``ledger_events`` row holds, as it was pushed.

    Equal content compares equal: amounts are exact and canonical on both sides, times
    the same instant. SQLite keeps no offset with a time; central stores UTC.
    """
    values = {name: row[name] for name in LedgerEvent.model_fields}
    occurred_at: datetime = values["occurred_at"]
    if occurred_at.tzinfo is None:
        values["occurred_at"] = occurred_at.replace(tzinfo=UTC)
    return LedgerEvent.model_validate(values)


def _same_content(row: RowMapping, pushed: LedgerEvent) -> bool:
    """Whether the held row is the pushed event. A row that today's contract would refuse
    (stored before a rule was tightened) cannot equal an event that passed it."""
    try:
        return stored_event(row) == pushed
    except ValidationError:
        return False


class EventVerdict(TypedDict):
    """An event's verdict, in the shape of :class:`~jxc.contract.EventResult`.

    Plain dicts, not models: the route turns a batch's verdicts into the answer's models
    in one validation (``central_api.schemas.sync.push_ack``), which costs less than half
    of building them one by one.
    """

    event_id: uuid.UUID
    seq: int
    status: EventStatus
    detail: str | None


def _verdict(event: LedgerEvent, status: EventStatus, detail: str | None = None) -> EventVerdict:
    return {"event_id": event.event_id, "seq": event.seq, "status": status, "detail": detail}


def _insert_for(connection: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` with this database's ``ON CONFLICT`` clause (same SQL, two dialects)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _log_outcome(
    *, site_id: str, verdicts: Sequence[EventVerdict], watermark: int, path: str
) -> None:
    all_accepted = path == "common"
    if all_accepted:  # no need to look through 5000 verdicts
        counts = Counter({EventStatus.ACCEPTED: len(verdicts)})
    else:
        counts = Counter(map(itemgetter("status"), verdicts))
    extra = {
        "site": site_id,
        "events": len(verdicts),
        "accepted": counts[EventStatus.ACCEPTED],
        "duplicate": counts[EventStatus.DUPLICATE],
        "conflict": counts[EventStatus.CONFLICT],
        "invalid": counts[EventStatus.INVALID],
        "acked_through_seq": watermark,
        "path": path,
    }
    refused = [] if all_accepted else [v for v in verdicts if v["status"] in _REFUSED]
    if refused:
        extra["first_refusal"] = f"seq {refused[0]['seq']}: {refused[0]['detail']}"
        log.warning("push ingested with refused events", extra=extra)
    else:
        log.info("push ingested", extra=extra)
