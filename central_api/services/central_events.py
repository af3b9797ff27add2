"""Central's own event stream: stock movements booked at headquarters.

A site with an edge writes its own events and pushes them (``services.ingest``). Documents
done at central (a receipt entered for a site without an edge, a QC release, a purchase
return; later sales shipments, write-offs, count adjustments, opening stock) need stock
events too, and DOMAIN.md wants them exactly-once like the edge's but "never a seq from a
site's stream". So:

* **Own table, own gapless seq.** Central's events go to ``central_events`` (the same
  columns as ``ledger_events``), numbered by a per-site counter in
  ``central_stream_state`` taken in the booking transaction: a rolled-back booking gives
  its numbers back, so the stream stays gapless. A site's ledger is the union of both
  tables (:func:`ledger_union`); an event id is a UUIDv7 either way, so the two never
  collide. Ingest, its statements and its benchmarks are untouched: nothing on the edge
  path reads or writes the new table.
* **Exactly once.** A booking is part of one document command, in that command's write
  transaction, after ``idempotency.check``: a retried request (same ``Idempotency-Key``)
  replays the document and books nothing; the events commit with the document or not at
  all.
* **Same projections, same transaction.** :func:`book` adds the events to
  ``stock_balances`` and runs the app's :class:`~central_api.services.projections.Projections`
  (``po_progress`` and whatever comes later) with them as
  :class:`~central_api.services.projections.AcceptedEvents`, exactly as ingest does after
  an insert, so a projection cannot tell a central event from an edge one.
* **Serialised with the site's pushes.** The booking locks the site's
  ``site_sync_state`` row, the row ingest locks for a push: a projection's
  read-modify-write of a PO line never races a push of the same site. Callers lock the
  site *before* their document (:func:`lock_site`), the order ingest takes them in.
* **Validated before it exists.** Unlike an edge fact, a central document may be refused:
  an outbound event that would take a balance below zero, or an event in a unit other
  than the balance's, is a 409 naming the key; nothing is written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    func,
    literal,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from central_api.errors import ConflictError
from central_api.models.base import from_micro_units
from central_api.models.ledger import (
    central_events,
    central_stream_state,
    ledger_events,
    site_sync_state,
)
from central_api.models.stock import NO_LOT, stock_balances
from central_api.services.ingest import (
    _MAX_ABS_MICRO,
    _id_texts,
    _insert_rows,
    _ledger_rows,
    _sum_by_key,
)
from central_api.services.ingest import _add_to_balances as _upsert_balances
from central_api.services.periods import refuse_closed
from central_api.services.projections import AcceptedEvents, Projections
from central_api.services.snapshots import correct as correct_snapshots
from jxc import uuid7
from jxc.contract import MAX_ABS_AMOUNT, EventKind, LedgerEvent

CENTRAL = "central"
EDGE = "edge"

if {c.name: type(c.type) for c in central_events.c} != {
    c.name: type(c.type) for c in ledger_events.c
}:  # pragma: no cover - at import
    raise ImportError(
        "central_events must keep ledger_events' columns: book() writes ingest's rows"
    )


@dataclass(frozen=True, slots=True)
class Movement:
    """One stock movement a central document books (signed by kind, like an event)."""

    kind: EventKind
    item: str
    location: str
    qty: Decimal
    uom: str
    lot: str | None = None
    expiry: date | None = None
    unit_cost: Decimal | None = None
    doc_type: str | None = None
    doc_id: str | None = None
    doc_line: int | None = None
    ref: str | None = None
    """This movement's own reference, instead of the booking's ``ref`` (an import's row)."""


def _insert(connection: Connection):  # type: ignore[no-untyped-def]
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


def lock_site(connection: Connection, site_id: str, *, now: datetime) -> None:
    """Create the site's sync row if need be (balances refer to it) and lock it, the row a
    push of that site locks: call it first in the transaction, before the document."""
    connection.execute(
        _insert(connection)(site_sync_state)
        .values(site_id=site_id, acked_through_seq=0, updated_at=now)
        .on_conflict_do_nothing(index_elements=[site_sync_state.c.site_id])
    )
    connection.execute(
        select(site_sync_state.c.site_id)
        .where(site_sync_state.c.site_id == site_id)
        .with_for_update()
    ).one()


def _take_seqs(connection: Connection, site_id: str, count: int) -> int:
    """Reserve ``count`` numbers of the site's central stream; the first one."""
    taken = (
        _insert(connection)(central_stream_state)
        .values(site_id=site_id, last_seq=count)
        .on_conflict_do_update(
            index_elements=[central_stream_state.c.site_id],
            set_={"last_seq": central_stream_state.c.last_seq + count},
        )
        .returning(central_stream_state.c.last_seq)
    )
    return int(connection.execute(taken).scalar_one()) - count + 1


def balance(
    connection: Connection, site_id: str, location: str, item: str, lot: str | None
) -> tuple[str, Decimal] | None:
    """``(uom, qty)`` on hand at one key, or None if it never had stock."""
    row = connection.execute(
        select(stock_balances.c.uom, stock_balances.c.qty).where(
            stock_balances.c.site_id == site_id,
            stock_balances.c.location == location,
            stock_balances.c.item == item,
            stock_balances.c.lot == (NO_LOT if lot is None else lot),
        )
    ).one_or_none()
    return None if row is None else (row.uom, row.qty)


_EVENTS = TypeAdapter(list[LedgerEvent])


def book(
    connection: Connection,
    *,
    site_id: str,
    movements: Sequence[Movement],
    actor: str,
    ref: str,
    now: datetime,
    projections: Projections | None,
    occurred_at: datetime | None = None,
) -> list[LedgerEvent]:
    """Book ``movements`` as central events of ``site_id``, in the caller's write
    transaction (after :func:`lock_site`): balances and projections move with them.
    ``occurred_at`` (default ``now``) dates them otherwise: a count's adjustments are
    dated at its snapshot, when the difference was true.

    Raises :class:`ConflictError` (nothing written) for a movement that would take a
    balance below zero or is in another unit than its balance, and for a booking dated
    inside a closed month by a user without ``period.post_closed`` (``services.periods``).
    """
    if not movements:
        return []
    if occurred_at is not None:
        refuse_closed(connection, occurred_at, actor=actor)
    first = _take_seqs(connection, site_id, len(movements))
    at = now if occurred_at is None else occurred_at
    # Validated as one list (the contract's every check, by pydantic's core in one
    # call) rather than a model constructor call per event: a count books 20,000.
    events = _EVENTS.validate_python(
        [
            {
                "event_id": uuid7(),
                "site_id": site_id,
                "seq": first + index,
                "occurred_at": at,
                "kind": move.kind,
                "item": move.item,
                "lot": move.lot,
                "expiry": move.expiry,
                "location": move.location,
                "qty": move.qty,
                "uom": move.uom,
                "unit_cost": move.unit_cost,
                "ref": move.ref or ref,
                "actor": actor[:64],
                "doc_type": move.doc_type,
                "doc_id": move.doc_id,
                "doc_line": move.doc_line,
            }
            for index, move in enumerate(movements)
        ]
    )
    dialect = connection.dialect
    rows = _ledger_rows(
        dialect,
        site_id=site_id,
        events=events,
        event_ids=_id_texts([event.event_id for event in events]),
        received_at=now,
    )
    _add_to_balances(connection, site_id, events, rows, now)
    _insert_rows(connection, rows, table=central_events)
    correct_snapshots(connection, site_id, events)
    if projections:
        projections.run(
            connection,
            AcceptedEvents(site_id=site_id, events=events, received_at=now, central=True),
        )
    return events


def _add_to_balances(
    connection: Connection,
    site_id: str,
    events: Sequence[LedgerEvent],
    rows: Sequence[tuple[Any, ...]],
    now: datetime,
) -> None:
    """Every key's sum checked against its balance, then written.

    The sums are ingest's (:func:`~central_api.services.ingest._sum_by_key`, integers of
    micro-units from the insert's own rows), the balances read in a few queries as
    integers, and the write is ingest's upsert (one statement on PostgreSQL, one
    ``executemany`` on SQLite): not a query and a statement per key, nor SQLAlchemy's
    parameter handling per row (a count's 20,000 adjustments are one booking). The
    checks and their messages are the same whatever the size: one unit per key, not
    below zero, and (new here, ingest's own limit) not beyond the largest amount.
    """
    sums = _sum_by_key(rows)
    if sums is None:
        units: dict[tuple[str, str, str | None], str] = {}
        for event in events:
            key = (event.location, event.item, event.lot)
            if units.setdefault(key, event.uom) != event.uom:
                raise ConflictError(f"{event.item} at {event.location}: two units in one booking")
        raise AssertionError("ingest's sums saw two units where there are none")  # pragma: no cover
    held_at = _balances(connection, site_id, sums)
    for key, (uom, qty) in sums.items():
        location, item, lot = key
        held = held_at.get(key)
        if held is not None and held[0] != uom:
            raise ConflictError(
                f"{item} at {site_id}/{location}: stock is kept in {held[0]}, not {uom}"
            )
        on_hand = 0 if held is None else held[1]
        if qty < 0 and on_hand + qty < 0:
            booked = sum(
                (
                    event.qty
                    for event in events
                    if (event.location, event.item, event.lot or NO_LOT) == key
                ),
                Decimal(0),
            )
            raise ConflictError(
                f"{item}{' lot ' + lot if lot else ''} at {site_id}/{location}: "
                f"{from_micro_units(on_hand)} {uom} on hand, {-booked} would leave it below zero"
            )
        if abs(on_hand + qty) >= _MAX_ABS_MICRO:
            raise ConflictError(
                f"{item}{' lot ' + lot if lot else ''} at {site_id}/{location}: this booking "
                f"would take the balance beyond the largest amount central keeps "
                f"(below {MAX_ABS_AMOUNT:,} in magnitude)"
            )
    written = _upsert_balances(connection, site_id=site_id, sums=sums, received_at=now)
    if written != len(sums):  # pragma: no cover - the checks above are the upsert's own
        raise RuntimeError(f"{len(sums)} balances checked, {written} written")


_CHUNK = 500
"""Item codes per ``IN`` list: well under any driver's limit on bound parameters."""


def balances(
    connection: Connection, site_id: str, keys: Collection[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[str, Decimal]]:
    """:func:`balance` of many keys ``(location, item, lot or NO_LOT)`` at once: those
    that exist, read by their items, 500 at a time (a count's entries are checked
    against 5,000 balances per request)."""
    return {
        key: (uom, from_micro_units(qty))
        for key, (uom, qty) in _balances(connection, site_id, keys).items()
    }


def _balances(
    connection: Connection, site_id: str, keys: Collection[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[str, int]]:
    """``(uom, micro-units)`` of the site's balances at ``keys`` (location, item, lot)
    that exist.

    One key alone is a single-row read; more are read by their items, 500 at a time (a
    few rows of other locations come along, unused)."""
    qty = type_coerce(stock_balances.c.qty, BigInteger).label("qty")
    columns = (
        stock_balances.c.location,
        stock_balances.c.item,
        stock_balances.c.lot,
        stock_balances.c.uom,
        qty,
    )
    found: dict[tuple[str, str, str], tuple[str, int]] = {}
    if len(keys) == 1:
        ((location, item, lot),) = keys
        chunks: list[Any] = [
            (
                stock_balances.c.location == location,
                stock_balances.c.item == item,
                stock_balances.c.lot == lot,
            )
        ]
    else:
        codes = sorted({item for _location, item, _lot in keys})
        chunks = [
            (stock_balances.c.item.in_(codes[first : first + _CHUNK]),)
            for first in range(0, len(codes), _CHUNK)
        ]
    for conditions in chunks:
        for row in connection.execute(
            select(*columns).where(stock_balances.c.site_id == site_id, *conditions)
        ):
            key = (row.location, row.item, row.lot)
            if key in keys:
                found[key] = (row.uom, int(row.qty))
    return found


def lot_expiry(connection: Connection, item_code: str, lot: str | None) -> date | None:
    """The expiry a lot's events state, edge or central (the earliest if they disagree)."""
    if not lot:
        return None
    found = [
        select(table.c.expiry).where(
            table.c.item == item_code, table.c.lot == lot, table.c.expiry.is_not(None)
        )
        for table in (ledger_events, central_events)
    ]
    union = union_all(*found).subquery()
    value = connection.execute(select(func.min(union.c.expiry))).scalar_one_or_none()
    return value if isinstance(value, date) else None


def lot_expiries(
    connection: Connection, keys: Iterable[tuple[str, str | None]]
) -> dict[tuple[str, str], date]:
    """:func:`lot_expiry` of many ``(item, lot)`` at once: one query per 500 items rather
    than one per line (a count of 20,000 lines posts its adjustments with their expiry)."""
    wanted = {(item, lot) for item, lot in keys if lot}
    codes = sorted({item for item, _lot in wanted})
    found: dict[tuple[str, str], date] = {}
    for first in range(0, len(codes), _CHUNK):
        chunk = codes[first : first + _CHUNK]
        parts = [
            select(table.c.item, table.c.lot, table.c.expiry).where(
                table.c.item.in_(chunk), table.c.lot.is_not(None), table.c.expiry.is_not(None)
            )
            for table in (ledger_events, central_events)
        ]
        union = union_all(*parts).subquery()
        rows = connection.execute(
            select(union.c.item, union.c.lot, func.min(union.c.expiry)).group_by(
                union.c.item, union.c.lot
            )
        )
        for item, lot, expiry in rows:
            if (item, lot) in wanted and isinstance(expiry, date):
                found[(item, lot)] = expiry
    return found


def ledger_union(*columns: str) -> Select[tuple[object, ...]]:
    """Every event of every site, edge and central, with ``columns`` and ``stream``
    (``"edge"`` / ``"central"``): what a rebuild of a projection reads."""
    edge = select(*(ledger_events.c[name] for name in columns), literal(EDGE).label("stream"))
    central = select(
        *(central_events.c[name] for name in columns), literal(CENTRAL).label("stream")
    )
    return select(union_all(edge, central).subquery())
