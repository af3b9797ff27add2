"""Stock snapshots: each (site, item)'s balances per (location, lot) at a month's start.

Stock as of a past moment per location and lot is a sum of ledger rows; for an item with
a long history that is tens of thousands of rows on either side of the moment (issue 17,
docs/performance.md). ``stock_snapshots`` holds, at the start of each month ``M`` (UTC),
for every (site, item) that moved in the month before, the sum of both ledgers'
quantities per (location, lot) over the events that happened before ``M``
(``occurred_at < M``). Stock as of a moment is then the nearest snapshot of the
(site, item), before the moment plus the movements since it, or after it less the
movements between (:func:`central_api.services.reports._balances_at`): about a month of
movements at most, however long the history.

**Exactly right, always.** A snapshot equals the ledger's sum when written and stays so:

* *Written under the site's lock* (:func:`write_site`, the row every push and every
  central booking of the site locks first), so no push of the site is half-seen: one that
  committed before is summed, one that waits commits after the snapshot and corrects it.
* *Corrected by every late event in the transaction that books it* (:func:`correct`,
  called by ingest's push and by ``central_events.book``, the only two writers of the
  ledgers, after their insert): an event dated before a snapshot of its (site, item) adds
  its quantity to every such snapshot (an upsert per later month: a few rows). An event
  dated in the current month, as nearly all are, is after every snapshot and costs no
  statement at all: snapshots are written only for a month start at least
  :data:`SETTLE` in the past (by this host's clock), and :func:`correct` reads the clock
  after the lock, so a snapshot of a month start later than the event cannot have been
  committed before it unless the clocks of two processes differ by more than that.
* *A (site, item) with no snapshot at a month start* (it did not move that month, or it
  moved less than :data:`LEAST` times since its last one, or the table is newer than it)
  keeps its earlier snapshot, which holds for the later moment as well (the movements in
  between are read), or, with none, is read as before the table existed. Snapshots are
  never deleted, so a moment chosen by one statement is still there for the next.

:func:`check` (``jxc central check``) recomputes every snapshot from the ledger and names
each that differs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import BigInteger, Connection, Engine, func, select, type_coerce, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central_api.core.db import write_transaction
from central_api.models.base import from_micro_units, to_micro_units
from central_api.models.ledger import central_events, ledger_events, site_sync_state
from central_api.models.stock import NO_LOT, stock_snapshot_runs, stock_snapshots
from central_api.models.valuation import valuation_entries
from jxc.contract import LedgerEvent

LEAST: Final = 256
"""Movements a (site, item) must have had since its last snapshot (or ever, with none)
for a month start to get one: a key that moves less is read from the ledger cheaply
(at most about this many movements plus a month's), and the table stays a small
fraction of the ledger (a dozen movements a year would otherwise cost a snapshot row
for most of them)."""

SETTLE: Final = timedelta(hours=1)
"""How long after a month's start its snapshots may be written: a margin for clocks of
central's processes that differ (see the module docstring)."""


def month_start(moment: datetime) -> datetime:
    """The start (UTC) of the month ``moment`` falls in."""
    moment = moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(start: datetime) -> datetime:
    """The start of the month after the one starting at ``start``."""
    return (start + timedelta(days=32)).replace(day=1)


def previous_month(start: datetime) -> datetime:
    """The start of the month before the one starting at ``start``."""
    return (start - timedelta(days=1)).replace(day=1)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _row(site_id: str, key: tuple[str, datetime, str, str], uom: str, qty: int) -> dict[str, Any]:
    """A ``stock_snapshots`` row for ``key`` = (item, moment, location, lot); ``qty`` in
    micro-units."""
    item, moment, location, lot = key
    return {
        "site_id": site_id,
        "item": item,
        "moment": moment,
        "location": location,
        "lot": lot,
        "uom": uom,
        "qty": from_micro_units(qty),
    }


def _insert(connection: Connection):  # type: ignore[no-untyped-def]
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


# --- keeping them right: the late event ----------------------------------------------------


def correct(connection: Connection, site_id: str, events: Sequence[LedgerEvent]) -> int:
    """Add each of ``events`` (just stored, the site's lock held) to every snapshot of its
    (site, item) dated after it; how many snapshot rows were written.

    Events dated in the current month (by the clock read now, after the lock) are after
    every snapshot: nothing is read or written for them.
    """
    threshold = month_start(datetime.now(UTC))
    late = [event for event in events if event.occurred_at < threshold]
    if not late:
        return 0
    earliest: dict[str, datetime] = {}
    for event in late:
        at = event.occurred_at
        if event.item not in earliest or at < earliest[event.item]:
            earliest[event.item] = at
    table = stock_snapshots.c
    moments: dict[str, list[datetime]] = defaultdict(list)
    found = connection.execute(
        select(table.item, table.moment)
        .where(
            table.site_id == site_id,
            table.item.in_(sorted(earliest)),
            table.moment > min(earliest.values()),
        )
        .distinct()
    )
    for item, moment in found:
        moments[item].append(_aware(moment))
    if not moments:
        return 0
    deltas: dict[tuple[str, datetime, str, str], tuple[str, int]] = {}
    for event in late:
        lot = NO_LOT if event.lot is None else event.lot
        qty = to_micro_units(event.qty)
        for moment in moments.get(event.item, ()):
            if event.occurred_at < moment:
                key = (event.item, moment, event.location, lot)
                held = deltas.get(key)
                deltas[key] = (event.uom, qty + (0 if held is None else held[1]))
    if not deltas:
        return 0
    rows = [_row(site_id, key, uom, qty) for key, (uom, qty) in deltas.items()]
    statement = _insert(connection)(stock_snapshots)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=list(stock_snapshots.primary_key.columns),
            set_={"qty": stock_snapshots.c.qty + statement.excluded.qty},
        ),
        rows,
    )
    return len(rows)


# --- writing them ---------------------------------------------------------------------------


def due(now: datetime) -> datetime:
    """The latest month start whose snapshots may be written at ``now`` (never later than
    this host's clock allows, whatever ``now`` says: :func:`correct` trusts the clock)."""
    return month_start(min(now, datetime.now(UTC)) - SETTLE)


def write_site(connection: Connection, site_id: str, *, now: datetime, least: int = LEAST) -> int:
    """Write the site's snapshots of every month start due and not yet written, in the
    caller's write transaction, holding the site's lock (taken here, first); how many
    snapshot rows were written.

    The first run of a site writes the month just due only (older keys are read as
    before); after that, every month start since the last run, in order, so each month's
    (site, item)s that moved are found from the month before.
    """
    from central_api.services.central_events import lock_site  # noqa: PLC0415 - it imports us

    lock_site(connection, site_id, now=now)
    upto = due(now)
    last = connection.execute(
        select(func.max(stock_snapshot_runs.c.moment)).where(
            stock_snapshot_runs.c.site_id == site_id
        )
    ).scalar_one_or_none()
    moment = upto if last is None else next_month(month_start(_aware(last)))
    written = 0
    while moment <= upto:
        keys = write_month(connection, site_id, moment, least=least)
        connection.execute(
            stock_snapshot_runs.insert().values(
                site_id=site_id, moment=moment, written_at=now, keys=keys
            )
        )
        written += keys
        moment = next_month(moment)
    return written


def write_due(engine: Engine, *, now: datetime | None = None, least: int = LEAST) -> int:
    """:func:`write_site` for every site, one write transaction each (central's monitor
    runs it once a day: it writes nothing but on the first days of a month)."""
    now = now or datetime.now(UTC)
    with engine.connect() as connection:
        sites = list(connection.execute(select(site_sync_state.c.site_id)).scalars())
        connection.rollback()
        written = 0
        upto = due(now)
        for site_id in sites:
            last = connection.execute(
                select(func.max(stock_snapshot_runs.c.moment)).where(
                    stock_snapshot_runs.c.site_id == site_id
                )
            ).scalar_one_or_none()
            connection.rollback()
            if last is not None and _aware(last) >= upto:
                continue
            with write_transaction(connection):
                written += write_site(connection, site_id, now=now, least=least)
    return written


def moved_items(
    connection: Connection, site_id: str, since: datetime, until: datetime
) -> list[str]:
    """The items with a movement at the site in ``[since, until)``, in either ledger."""
    parts = [
        select(table.c.item).where(
            table.c.site_id == site_id, table.c.occurred_at >= since, table.c.occurred_at < until
        )
        for table in (ledger_events, central_events)
    ]
    moved = union_all(*parts).subquery()
    return sorted(connection.execute(select(moved.c.item).distinct()).scalars())


def write_month(
    connection: Connection, site_id: str, moment: datetime, *, least: int = LEAST
) -> int:
    """The snapshots at ``moment`` of every item that moved at the site in the month
    before it and has had at least ``least`` movements since its last snapshot (or ever),
    the site's lock held; how many rows (zero sums are not written: a place absent from
    a snapshot holds nothing)."""
    written = 0
    rows: list[dict[str, Any]] = []
    table = stock_snapshots.c
    for item in moved_items(connection, site_id, previous_month(moment), moment):
        last = connection.execute(
            select(func.max(table.moment)).where(
                table.site_id == site_id, table.item == item, table.moment < moment
            )
        ).scalar_one_or_none()
        if (
            _moves_since(
                connection, site_id=site_id, item=item, since=last, until=moment, cap=least
            )
            < least
        ):
            continue
        for location, lot, uom, qty in stock_before(connection, site_id, item, moment, last):
            rows.append(_row(site_id, (item, moment, location, lot), uom, qty))
        if len(rows) >= 1000:
            connection.execute(stock_snapshots.insert(), rows)
            written += len(rows)
            rows = []
    if rows:
        connection.execute(stock_snapshots.insert(), rows)
        written += len(rows)
    return written


def _moves_since(
    connection: Connection,
    *,
    site_id: str,
    item: str,
    since: datetime | None,
    until: datetime,
    cap: int,
) -> int:
    """The (site, item)'s movements in [``since``, ``until``), counted up to ``cap`` in
    the valuation entries' (site_id, item, occurred_at) index (an entry per event of
    either ledger)."""
    entries = valuation_entries.c
    inner = select(entries.event_id).where(
        entries.site_id == site_id, entries.item == item, entries.occurred_at < until
    )
    if since is not None:
        inner = inner.where(entries.occurred_at >= since)
    counted = select(func.count()).select_from(inner.limit(cap).subquery())
    return int(connection.execute(counted).scalar_one())


def stock_before(
    connection: Connection, site_id: str, item: str, moment: datetime, base: datetime | None
) -> list[tuple[str, str, str, int]]:
    """``(location, lot, uom, qty in micro-units)`` of the (site, item) summed over the
    events before ``moment``, non-zero only: its latest snapshot before ``moment``
    (``base``) and the movements since (or every movement, with none)."""
    from central_api.services import reports  # noqa: PLC0415 - reports reads the table

    chosen = reports.StockFilter(site_id=site_id, item=item)
    if base is None:
        parts = reports.moved_parts(chosen, before=moment)
    else:
        base = _aware(base)
        parts = [
            reports.snapshot_part(chosen, base),
            *reports.moved_parts(chosen, since=base, before=moment),
        ]
    return [
        (
            row["location"],
            NO_LOT if row["lot"] is None else row["lot"],
            row["uom"],
            to_micro_units(row["qty"]),
        )
        for row in reports.summed(connection, parts)
    ]


# --- checking them --------------------------------------------------------------------------


def _ledger_by_item(connection: Connection, site_id: str) -> Iterator[tuple[Any, ...]]:
    """Both ledgers' rows of the site as (item, occurred_at, location, lot, uom, qty)."""
    parts = [
        select(
            table.c.item,
            table.c.occurred_at,
            table.c.location,
            func.coalesce(table.c.lot, NO_LOT).label("lot"),
            table.c.uom,
            type_coerce(table.c.qty, BigInteger).label("qty"),
        ).where(table.c.site_id == site_id)
        for table in (ledger_events, central_events)
    ]
    moved = union_all(*parts).subquery()
    yield from connection.execute(select(moved).order_by(moved.c.item, moved.c.occurred_at))


def check(
    connection: Connection,
    *,
    sites: Collection[str] | None = None,
    wrong: set[tuple[str, str]] | None = None,
) -> list[Any]:
    """Every snapshot row that differs from the ledger's sum before its moment (and every
    key the ledger has non-zero there that the snapshot leaves out), as
    :class:`~central_api.services.valuation.Difference`.

    One pass over each site's ledger in (item, occurred_at) order beside its snapshots in
    (item, moment) order: the ledger read once, whatever the number of snapshots.
    ``wrong``, if given, receives each (site, item) with a difference."""
    from central_api.services.valuation import Difference  # noqa: PLC0415

    table = stock_snapshots.c
    chosen = (
        list(connection.execute(select(table.site_id).distinct()).scalars())
        if sites is None
        else list(sites)
    )
    found: list[Difference] = []
    for site_id in sorted(chosen):
        stored: dict[str, dict[datetime, dict[tuple[str, str], tuple[str, int]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for item, moment, location, lot, uom, qty in connection.execute(
            select(
                table.item,
                table.moment,
                table.location,
                table.lot,
                table.uom,
                type_coerce(table.qty, BigInteger),
            ).where(table.site_id == site_id)
        ):
            stored[item][_aware(moment)][(location, lot)] = (uom, int(qty))
        rows_by_item: dict[str, list[tuple[datetime, str, str, str, int]]] = defaultdict(list)
        for item, at, location, lot, uom, qty in _ledger_by_item(connection, site_id):
            if item in stored:
                rows_by_item[item].append((_aware(at), location, lot, uom, int(qty)))
        for item, by_moment in sorted(stored.items()):
            moves = rows_by_item.get(item, [])
            running: dict[tuple[str, str], int] = defaultdict(int)
            index = 0
            for moment in sorted(by_moment):
                while index < len(moves) and moves[index][0] < moment:
                    _at, location, lot, _uom, qty = moves[index]
                    running[(location, lot)] += qty
                    index += 1
                held = by_moment[moment]
                for place in sorted(set(held) | {k for k, v in running.items() if v}):
                    kept = held[place][1] if place in held else 0
                    if kept != running.get(place, 0):
                        if wrong is not None:
                            wrong.add((site_id, item))
                        found.append(
                            Difference(
                                "stock snapshot",
                                f"{site_id}/{place[0]}/{item}/{place[1] or '-'} at "
                                f"{moment.isoformat()}",
                                str(from_micro_units(kept)),
                                str(from_micro_units(running.get(place, 0))),
                            )
                        )
    return found


def repair(connection: Connection) -> int:
    """Delete every snapshot of each (site, item) that has one differing from the ledger
    (in the caller's write transaction); how many (site, item)s. Their reads fall back to
    the ledger, exactly, and the monitor writes them again from the next month start on
    (a key that reaches :data:`LEAST` movements again)."""
    wrong: set[tuple[str, str]] = set()
    check(connection, wrong=wrong)
    for site_id, item in sorted(wrong):
        connection.execute(
            stock_snapshots.delete().where(
                stock_snapshots.c.site_id == site_id, stock_snapshots.c.item == item
            )
        )
    return len(wrong)


__all__ = [
    "LEAST",
    "SETTLE",
    "check",
    "correct",
    "due",
    "month_start",
    "moved_items",
    "next_month",
    "previous_month",
    "repair",
    "stock_before",
    "write_due",
    "write_month",
    "write_site",
]
